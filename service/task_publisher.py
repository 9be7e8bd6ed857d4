"""Queues a Celery task with one LPUSH: the Slack acknowledgement's durable hand-off to the workers."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import uuid
from typing import Any


class TaskPublisher:
    """Queues a Celery task with one LPUSH: the Slack acknowledgement's hand-off to the workers.

    `celery.send_task` spent ~1 ms of CPU per message in Celery's and kombu's layers (42% of the web's
    CPU while acknowledging, bench/RESULTS.md); a Slack click must be queued durably before it is
    acknowledged, so that cost sat on every acknowledgement. The message written here is the one kombu's
    Redis transport writes for `send_task` (Celery's task protocol 2, JSON, base64 body, default queue and
    priority), which the worker consumes like any other; tests/test_task_publisher.py holds it against kombu's.

    Messages sent at the same moment from several threads share one LPUSH (group commit): the first sender
    writes everything waiting, and whoever arrives during that round trip waits for the next one, led by
    the first of them. A lone sender writes at once; every sender returns only after Redis took its message.
    """

    EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}

    def __init__(self, redis_client: Any, queue: str = "celery"):
        self.redis, self.queue = redis_client, queue
        self.origin = f"{os.getpid()}@{socket.gethostname()}"
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._writing = False  # a leader is writing a batch; new senders join the next one

    def message(self, name: str, args: list[Any], argsrepr: str) -> dict[str, Any]:
        # One random id serves as task id and delivery tag: each only has to be unique per message.
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
                "priority": 0, "body_encoding": "base64", "delivery_tag": task_id,
            },
        }

    def send(self, name: str, args: list[Any], argsrepr: str = "") -> str:
        """Queue the task; raises (redis errors) if Redis did not take it."""
        message = self.message(name, args, argsrepr)
        slot = _Slot(json.dumps(message))
        with self._lock:
            self._waiting.append(slot)
            slot.leads = not self._writing
            self._writing = True
        if not slot.leads:
            slot.done.wait()  # woken when its batch is written, or to lead the next batch
        if slot.leads:
            self._write_batch()
        if slot.error is not None:
            raise slot.error
        return task_id_of(message)

    def _write_batch(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        error: BaseException | None = None
        try:
            # LPUSH k a b c leaves c leftmost; workers pop from the right, so a is still taken first.
            self.redis.lpush(self.queue, *[s.payload for s in batch])
        except BaseException as exc:  # every sender of the batch hears it; none is told "queued"
            error = exc
        with self._lock:
            if error is not None and self._waiting:
                # Those who queued up behind a failed write fail with it rather than wait out a second
                # timeout: Slack gives the whole acknowledgement 3 s.
                batch, self._waiting = batch + self._waiting, []
            if self._waiting:  # hand the lead to the first sender that arrived during the write
                self._waiting[0].leads = True
                self._waiting[0].done.set()
            else:
                self._writing = False
        for s in batch:
            s.error = error
            s.done.set()


def task_id_of(message: dict[str, Any]) -> str:
    return str(message["headers"]["id"])


class _Slot:
    __slots__ = ("done", "error", "leads", "payload")

    def __init__(self, payload: str):
        self.payload = payload
        self.done = threading.Event()
        self.leads = False
        self.error: BaseException | None = None
