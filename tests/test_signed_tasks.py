"""Redis is a trust boundary: whoever can write to it must not be able to queue an interaction that approves as
someone. The web seals every queued interaction (HMAC, KEYTURN_TASK_SIGNING_KEY); a real Celery worker on the
real Redis refuses one that is unsigned, altered, signed with another key, too old or replayed, and does
nothing for it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import celery
import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun

from service.core.sealing import seal, seal_refusal
from service.operations.context import RecordingDispatcher, utcnow
from service.operations.request_access import request_access
from service.queues import QUEUES
from service.settings import Settings
from service.slack.interactions import INTERACTION_TASK, run_queued
from service.store.db import migrate
from service.store.models import AccessRequest, Approval
from service.task_publisher import TaskPublisher
from tests.slack.conftest import APPR1, MALLORY, write_catalog
from tests.support.slack_fake import FakeSlack
from tests.support.slack_signing import DEFAULT_SECRET, TASK_SIGNING_KEY


@dataclass
class Queue:
    app: Any
    runtime: Any
    redis: Any
    fake: FakeSlack
    results: list[Any] = field(default_factory=list)

    def file(self) -> int:
        return request_access(self.runtime.ctx, requester="U0ALICE01", role_id="ops-read",
                              duration=timedelta(hours=1), team_id="T0TEAM001").request_id

    def approve(self, request_id: int, user: str = APPR1, key: str = "r") -> dict[str, Any]:
        return {"request_id": request_id, "user": user, "team": "T0TEAM001", "token": f"trigger-{key}",
                "response_url": self.fake.response_url(key)}

    def push(self, args: list[Any]) -> bytes:
        raw = json.dumps(TaskPublisher(self.redis).message(INTERACTION_TASK, args, argsrepr="approve")).encode()
        self.redis.lpush("celery", raw)
        return raw

    def run_worker(self, expected: int) -> list[Any]:
        with start_worker(self.app.extensions["celery"], pool="solo", perform_ping_check=False,
                          shutdown_timeout=10):
            deadline = time.monotonic() + 30
            while len(self.results) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
        assert len(self.results) == expected, self.results
        return self.results

    def count(self, model: Any) -> int:
        with self.runtime.ctx.store() as session:
            return session.query(model).count()

    def state(self, request_id: int) -> str:
        with self.runtime.ctx.store() as session:
            row = session.get(AccessRequest, request_id)
            assert row is not None
            return row.state


@pytest.fixture
def queue(tmp_path: Path, redis_url: str, slack_fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """The worker's app (create_app, http=False) on SQLite and the real Redis; the test starts the worker."""
    from service.app import create_app
    from service.runtime import build_runtime

    db = f"sqlite:///{tmp_path}/keyturn.db"
    migrate(db)
    settings = Settings(database_url=db, redis_url=redis_url, catalog_path=write_catalog(tmp_path / "c.yaml"),
                        slack_bot_token="xoxb-test", slack_signing_secret=DEFAULT_SECRET,
                        task_signing_key=TASK_SIGNING_KEY, slack_api_url=slack_fake.base_url,
                        slack_response_origins=(slack_fake.root_url,), log_level="WARNING")
    monkeypatch.setattr(celery._state, "default_app", celery._state.default_app)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    runtime = build_runtime(settings, dispatch=RecordingDispatcher())
    app = create_app(settings, runtime=runtime, http=False)
    client = redis.Redis.from_url(redis_url)
    client.delete(*QUEUES)
    q = Queue(app, runtime, client, slack_fake)

    def record(sender: Any = None, retval: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) == INTERACTION_TASK:
            q.results.append(retval)

    task_postrun.connect(record, weak=False)
    try:
        yield q
    finally:
        task_postrun.disconnect(record)
        client.delete(*QUEUES)
        root.handlers[:], root.level = handlers, level
        runtime.engine.dispose()


def test_forged_altered_and_replayed_interactions_are_refused_by_a_real_worker(queue: Queue) -> None:
    from service.runtime import CeleryDispatcher

    rid, other = queue.file(), queue.file()
    now = int(utcnow().timestamp())
    genuine_for_other = seal(TASK_SIGNING_KEY, INTERACTION_TASK, ["approve", queue.approve(other)], at=now)
    queue.push(["approve", queue.approve(rid)])  # unsigned: what anyone with Redis could queue
    queue.push(["approve", queue.approve(rid), genuine_for_other])  # a real seal on another request
    queue.push(["approve", queue.approve(rid, MALLORY), {**genuine_for_other, "mac": "0" * 64}])
    queue.push(["approve", queue.approve(rid),
                seal("another-key-of-32-characters-or-more", INTERACTION_TASK, ["approve", queue.approve(rid)],
                     at=now)])
    stale = ["approve", queue.approve(rid)]
    queue.push([*stale, seal(TASK_SIGNING_KEY, INTERACTION_TASK, stale, at=now - 31 * 60)])
    # The web's own hand-off, then a copy of it written again into Redis.
    CeleryDispatcher(queue.app.extensions["celery"], queue.redis, signing_key=TASK_SIGNING_KEY) \
        .interact("approve", queue.approve(rid, key="real"))
    (sent,) = queue.redis.lrange("celery", 0, 0)
    queue.redis.lpush("celery", sent)

    results = queue.run_worker(7)
    assert results[:4] == ["unsigned", *["bad signature (altered, or signed with another key)"] * 3]
    assert results[4].startswith("sealed 18") and results[4].endswith("s ago, more than 1800s")
    assert results[5:] == [None, "replayed: this message was already carried out"]
    assert queue.state(rid) == "approved" and queue.state(other) == "pending"
    assert queue.count(Approval) == 1  # only the web's own message decided anything
    assert [c.params["_key"] for c in queue.fake.calls("response_url")] == []  # nobody answered for a forgery


def test_a_worker_without_the_key_refuses_every_interaction(queue: Queue) -> None:
    rid = queue.file()
    args = ["approve", queue.approve(rid)]
    sealed = seal(TASK_SIGNING_KEY, INTERACTION_TASK, args, at=int(utcnow().timestamp()))
    refusal = run_queued(queue.runtime.ctx, "approve", args[1], sealed, lambda *_: None, key="",
                         max_age=timedelta(minutes=30))
    assert refusal == "this worker has no task signing key" and queue.state(rid) == "pending"


def test_the_seal_covers_every_argument_and_its_own_fields() -> None:
    args = ["approve", {"request_id": 1, "user": APPR1}]
    good = seal(TASK_SIGNING_KEY, INTERACTION_TASK, args, at=1_000_000)

    def refusal(sealed: Any, name: str = INTERACTION_TASK, a: Any = args, now: int = 1_000_010) -> str | None:
        return seal_refusal(TASK_SIGNING_KEY, name, a, sealed, now=now, max_age=1800)

    assert refusal(good) is None
    assert refusal(good, name="keyturn.other") is not None
    assert refusal(good, a=["approve", {"request_id": 1, "user": MALLORY}]) is not None
    assert refusal({**good, "at": 1_000_005}) is not None  # the time is signed too
    assert refusal({**good, "nonce": "0" * 32}) is not None
    assert refusal(good, now=1_000_000 - 120) == "sealed in the future"
    assert refusal({**good, "at": True}) == "malformed seal" and refusal("v1") == "unsigned"
    with pytest.raises(ValueError):
        seal("", INTERACTION_TASK, args, at=1)
