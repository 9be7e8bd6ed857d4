"""celery_init_app, after Flask's own Celery pattern: tasks run inside the Flask app context."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask
from kombu import Queue

from service.queues import DEFAULT_QUEUE, IAM_QUEUE, QUEUES, REVOKE_QUEUE
from service.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    from service.operations.retention import PRUNE_EVERY
    from workers import tasks
    from workers.broker import Transport

    return {
        "broker_url": settings.redis_url,
        "broker_transport": Transport,  # kombu's Redis transport, one client per channel (workers/broker.py)
        "task_ignore_result": True,
        # Idempotent tasks, acknowledged only when done: a killed worker's task is redelivered.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": 120,
        "task_soft_time_limit": 90,
        "timezone": "UTC",
        "enable_utc": True,
        "broker_connection_retry_on_startup": True,
        # Keep the JSON logging create_app configured instead of Celery's own root handler.
        "worker_hijack_root_logger": False,
        # Unacked tasks come back after this; expiry never rides on an ETA, the sweeper owns it. The connect
        # timeout and the short publish retries bound how long a Slack acknowledgement can wait on a dead
        # Redis before it tells the user nothing was queued (Slack gives up at 3 s).
        # "priority": a worker polls its queues in the order of QUEUES instead of round robin
        # (service/queues.py); a sync that ends access is sent to REVOKE_QUEUE by the dispatcher.
        "broker_transport_options": {"visibility_timeout": 300, "socket_connect_timeout": 1,
                                     "queue_order_strategy": "priority"},
        "task_queues": tuple(Queue(name) for name in QUEUES),
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {tasks.sweep.name: {"queue": REVOKE_QUEUE}, tasks.sync_target.name: {"queue": IAM_QUEUE},
                        tasks.reconcile_all.name: {"queue": IAM_QUEUE}},
        "task_publish_retry_policy": {"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                      "interval_max": 0.2},
        "beat_schedule": {
            tasks.sweep.name: {"task": tasks.sweep.name, "schedule": settings.sweep_interval.total_seconds()},
            tasks.reconcile_all.name: {
                "task": tasks.reconcile_all.name,
                "schedule": settings.reconcile_interval.total_seconds(),
            },
            tasks.prune_processed_events.name: {"task": tasks.prune_processed_events.name,
                                                "schedule": PRUNE_EVERY.total_seconds()},
        },
    }


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(settings))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
