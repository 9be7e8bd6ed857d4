"""The lean task publisher writes the very message kombu writes for `send_task`, so a real worker runs it
(tests/slack/test_slack_lifecycle.py files a request through it and a real Celery worker carries it out)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
import redis
from celery import Celery

from service.task_publisher import TaskPublisher
from workers.broker import Transport

IDS = ("id", "root_id", "correlation_id", "delivery_tag", "origin", "reply_to")


def normalised(raw: bytes) -> dict[str, Any]:
    """The message with its per-message ids blanked, and its body decoded."""
    message = json.loads(raw)
    for part in (message["headers"], message["properties"]):
        for key in IDS:
            if key in part:
                part[key] = "-"
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


@pytest.fixture
def broker(redis_url: str) -> Any:
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    yield client
    client.delete("celery")


def test_the_message_is_kombus_own_for_the_same_task(broker: Any, redis_url: str) -> None:
    args = ["file", {"user": "U0ALICE01", "role": "ops-read", "duration": 3600, "reason": "naïve <tag>"}]
    app = Celery("reference", broker=redis_url)
    app.conf.update(task_ignore_result=True, broker_transport=Transport)
    app.send_task("keyturn.slack_interaction", args=args, argsrepr="file", kwargsrepr="")
    theirs = broker.rpop("celery")
    task_id = TaskPublisher(broker).send("keyturn.slack_interaction", args, argsrepr="file")
    ours = broker.rpop("celery")
    assert normalised(ours) == normalised(theirs)
    assert normalised(ours)["body"][0] == args
    headers = json.loads(ours)["headers"]
    assert headers["id"] == headers["root_id"] == task_id == json.loads(ours)["properties"]["correlation_id"]


def test_every_message_has_its_own_ids(broker: Any) -> None:
    publisher = TaskPublisher(broker)
    first, second = publisher.send("keyturn.x", [1]), publisher.send("keyturn.x", [1])
    assert first != second and broker.llen("celery") == 2
    tags = {json.loads(m)["properties"]["delivery_tag"] for m in broker.lrange("celery", 0, -1)}
    assert len(tags) == 2


def test_a_dead_redis_raises_instead_of_losing_the_task() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError):
        TaskPublisher(dead).send("keyturn.x", [1])
