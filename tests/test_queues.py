"""Which queue each kind of work lands in (real Redis, the real Celery configuration): ending access has a
lane of its own, ahead of Slack interactions and notifications, which are ahead of the other syncs.
tests/integration/test_worker_faults_more.py shows a real worker taking them in that order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from service.queues import DEFAULT_QUEUE, IAM_QUEUE, QUEUES, REVOKE_QUEUE
from service.runtime import CeleryDispatcher
from service.settings import Settings
from tests.support.slack_signing import TASK_SIGNING_KEY
from workers.celery_app import celery_config

KEY = "trust_policy:123456789012:OpsAdmin"


@pytest.fixture
def lanes(redis_url: str) -> Iterator[tuple[CeleryDispatcher, Any]]:
    client = redis.Redis.from_url(redis_url)
    flags = [f"keyturn:queued:{KEY}", f"keyturn:queued:urgent:{KEY}"]
    client.delete(*QUEUES, *flags)
    app = Celery("lanes")
    app.config_from_object(celery_config(Settings(redis_url=redis_url)))
    yield CeleryDispatcher(app, client, signing_key=TASK_SIGNING_KEY), client
    client.delete(*QUEUES, *flags)


def depths(client: Any) -> dict[str, int]:
    return {q: int(client.llen(q)) for q in QUEUES}


def tasks_in(client: Any, queue: str) -> list[tuple[str, Any]]:
    out = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        out.append((message["headers"]["task"], message["headers"]["argsrepr"]))
    return out


def test_a_sync_that_ends_access_takes_its_own_lane_even_with_a_normal_one_waiting(lanes: Any) -> None:
    dispatch, client = lanes
    dispatch.sync(KEY)
    dispatch.sync(KEY)  # one waiting sync per target is enough: it reads the latest state when it runs
    assert depths(client) == {REVOKE_QUEUE: 0, IAM_QUEUE: 1, DEFAULT_QUEUE: 0}
    dispatch.sync(KEY, urgent=True)  # not held back by the normal one waiting behind other IAM work
    dispatch.sync(KEY, urgent=True)
    assert depths(client) == {REVOKE_QUEUE: 1, IAM_QUEUE: 1, DEFAULT_QUEUE: 0}
    assert tasks_in(client, REVOKE_QUEUE) == [("keyturn.sync_target", repr([KEY]))]
    dispatch.clear_queued(KEY)  # what the sync task does as it starts: both lanes may be woken again
    dispatch.sync(KEY)
    dispatch.sync(KEY, urgent=True)
    assert depths(client) == {REVOKE_QUEUE: 2, IAM_QUEUE: 2, DEFAULT_QUEUE: 0}


def test_sweeps_go_to_the_revoke_lane_reconciles_to_iam_and_the_rest_to_the_default(lanes: Any) -> None:
    dispatch, client = lanes
    dispatch.celery.send_task("keyturn.sweep")
    dispatch.celery.send_task("keyturn.reconcile_all")
    dispatch.notify("grant.ended", grant_id=1)
    dispatch.interact("list", {"user": "U0ALICE01"})
    assert depths(client) == {REVOKE_QUEUE: 1, IAM_QUEUE: 1, DEFAULT_QUEUE: 2}
    assert [t for t, _ in tasks_in(client, DEFAULT_QUEUE)] == ["keyturn.slack_interaction", "keyturn.notify"]


def test_a_worker_polls_the_lanes_in_order() -> None:
    conf = celery_config(Settings())
    assert [q.name for q in conf["task_queues"]] == [REVOKE_QUEUE, DEFAULT_QUEUE, IAM_QUEUE]
    # Without "priority" kombu rotates the queues round robin after each message.
    assert conf["broker_transport_options"]["queue_order_strategy"] == "priority"


def test_a_wake_up_that_could_not_be_sent_does_not_hold_back_the_next(lanes: Any) -> None:
    dispatch, client = lanes
    dead = Celery("dead")
    dead.config_from_object({**celery_config(Settings()), "broker_url": "redis://127.0.0.1:1/0"})
    CeleryDispatcher(dead, client).sync(KEY, urgent=True)  # logged, not raised: the sweeper re-sends it
    assert client.get(f"keyturn:queued:urgent:{KEY}") is None  # no flag left without its task
    dispatch.sync(KEY, urgent=True)  # the next wake-up goes out at once, not after the flag's TTL
    assert depths(client)[REVOKE_QUEUE] == 1
