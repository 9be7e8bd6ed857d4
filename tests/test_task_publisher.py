"""The lean task publisher writes the very message kombu writes for `send_task`, so a real worker runs it
(tests/slack/test_slack_lifecycle.py files a request through it and a real Celery worker carries it out)."""

from __future__ import annotations

import base64
import json
import threading
import time
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


class SlowRedis:
    """The real client, with each LPUSH held for a moment and counted: time for other senders to arrive."""

    def __init__(self, client: Any, delay: float = 0.05, fail_first: int = 0):
        self.client, self.delay, self.fail_first = client, delay, fail_first
        self.lpush_calls: list[int] = []
        self.lock = threading.Lock()

    def lpush(self, key: str, *values: Any) -> int:
        with self.lock:
            self.lpush_calls.append(len(values))
            failing = len(self.lpush_calls) <= self.fail_first
        time.sleep(self.delay)
        if failing:
            raise redis.ConnectionError("Redis went away")
        return int(self.client.lpush(key, *values))


def send_at_once(publisher: TaskPublisher, n: int) -> list[str | BaseException]:
    barrier, results = threading.Barrier(n), [None] * n  # type: list[Any]

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = publisher.send("keyturn.x", [i])
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a sender never returned"
    return results


def test_senders_at_the_same_moment_share_lpushes_and_every_message_lands_once(broker: Any) -> None:
    slow = SlowRedis(broker)
    ids = send_at_once(TaskPublisher(slow), 20)
    assert all(isinstance(i, str) for i in ids) and len(set(ids)) == 20
    assert sum(slow.lpush_calls) == 20 and len(slow.lpush_calls) < 20  # batched, nothing written twice
    queued = [json.loads(m)["headers"]["id"] for m in broker.lrange("celery", 0, -1)]
    assert sorted(queued) == sorted(ids)


def test_one_sender_keeps_its_order_and_writes_alone(broker: Any) -> None:
    slow = SlowRedis(broker, delay=0)
    publisher = TaskPublisher(slow)
    ids = [publisher.send("keyturn.x", [i]) for i in range(5)]
    assert slow.lpush_calls == [1] * 5
    popped = [json.loads(broker.rpop("celery"))["headers"]["id"] for _ in range(5)]  # as a worker takes them
    assert popped == ids


def test_a_failed_batch_is_reported_to_each_of_its_senders(broker: Any) -> None:
    slow = SlowRedis(broker, fail_first=1)
    results = send_at_once(TaskPublisher(slow), 10)
    failed = [r for r in results if isinstance(r, redis.ConnectionError)]
    landed = [r for r in results if isinstance(r, str)]
    assert len(failed) >= slow.lpush_calls[0] >= 1 and len(failed) + len(landed) == 10
    assert broker.llen("celery") == len(landed)  # the failed ones were not queued, and their senders know


def test_after_a_failed_write_the_same_publisher_still_sends(broker: Any) -> None:
    slow = SlowRedis(broker, delay=0, fail_first=1)
    publisher = TaskPublisher(slow)
    with pytest.raises(redis.ConnectionError):
        publisher.send("keyturn.x", [1])
    assert publisher.send("keyturn.x", [2]) and broker.llen("celery") == 1  # the lead was not left stuck


def test_senders_queued_behind_a_failed_write_fail_with_it_instead_of_trying_again(broker: Any) -> None:
    slow = SlowRedis(broker, delay=0.5, fail_first=1)
    started = time.monotonic()
    results = send_at_once(TaskPublisher(slow), 10)
    assert all(isinstance(r, redis.ConnectionError) for r in results)
    assert len(slow.lpush_calls) == 1 and broker.llen("celery") == 0
    assert time.monotonic() - started < 1.5  # one failed write, not one per batch
