"""Queues a Celery task with one LPUSH: the Slack acknowledgement's durable hand-off to the workers."""

from __future__ import annotations

import base64
import json
import os
import socket
import uuid
from typing import Any


class TaskPublisher:
    """Queues a Celery task with one LPUSH: the Slack acknowledgement's hand-off to the workers.

    `celery.send_task` spent ~1 ms of CPU per message in Celery's and kombu's layers (42% of the web's
    CPU while acknowledging, bench/RESULTS.md); a Slack click must be queued durably before it is
    acknowledged, so that cost sat on every acknowledgement. The message written here is the one kombu's
    Redis transport writes for `send_task` (Celery's task protocol 2, JSON, base64 body, default queue and
    priority), which the worker consumes like any other; tests/test_task_publisher.py holds it against kombu's.
    """

    EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def __init__(self, redis_client: Any, queue: str = "celery"):
        self.redis, self.queue = redis_client, queue
        self.origin = f"{os.getpid()}@{socket.gethostname()}"

    def message(self, name: str, args: list[Any], argsrepr: str) -> dict[str, Any]:
        task_id = str(uuid.uuid4())
        body = json.dumps([args, {}, self.EMBED]).encode()
        return {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": name, "id": task_id, "shadow": None, "eta": None, "expires": None,
                "group": None, "group_index": None, "retries": 0, "timelimit": [None, None], "root_id": task_id,
                "parent_id": None, "argsrepr": argsrepr, "kwargsrepr": "", "origin": self.origin,
                "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            },
            "properties": {
                "correlation_id": task_id, "reply_to": "", "argsrepr": argsrepr, "kwargsrepr": "",
                "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": self.queue},
                "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
            },
        }

    def send(self, name: str, args: list[Any], argsrepr: str = "") -> str:
        """Queue the task; raises (redis errors) if Redis did not take it."""
        message = self.message(name, args, argsrepr)
        self.redis.lpush(self.queue, json.dumps(message))
        return str(message["headers"]["id"])
