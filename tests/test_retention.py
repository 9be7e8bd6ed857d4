"""processed_events does not grow forever: rows past the retention are pruned in batches, newer ones kept
(so a retried delivery is still recognised), on SQLite and PostgreSQL; beat runs the prune hourly."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from service.operations.retention import (
    DEFAULT_RETENTION,
    RetentionError,
    prune_processed_events,
    retention_from_env,
)
from service.slack.listeners.home import first_delivery
from service.store.models import ProcessedEvent
from tests.api import ApiWorld, make_api

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[ApiWorld]:
    w = make_api(db_url, tmp_path)
    yield w
    w.close()


def test_rows_past_the_retention_are_pruned_in_batches(world: ApiWorld) -> None:
    ctx = replace(world.runtime.ctx, now=lambda: NOW)
    ages = {f"Ev-old-{i}": timedelta(days=8, minutes=i) for i in range(7)}
    ages |= {"notice:request.filed:1:dm": timedelta(days=6), "Ev-fresh": timedelta(minutes=1)}
    with ctx.store.begin() as session:
        session.add_all(ProcessedEvent(event_id=key, at=NOW - age) for key, age in ages.items())
    assert prune_processed_events(ctx, retention=timedelta(days=7), batch=3) == 7  # 3 + 3 + 1
    with ctx.store() as session:
        left = sorted(session.execute(select(ProcessedEvent.event_id)).scalars())
    assert left == ["Ev-fresh", "notice:request.filed:1:dm"]
    # A retry of a delivery still within the retention is still told apart; a pruned id is new again.
    assert first_delivery(ctx, "Ev-fresh") is False
    assert first_delivery(ctx, "Ev-old-0") is True
    assert prune_processed_events(ctx, retention=timedelta(days=7)) == 0


def test_the_retention_setting() -> None:
    assert retention_from_env({}) == DEFAULT_RETENTION == timedelta(days=7)
    assert retention_from_env({"KEYTURN_PROCESSED_EVENTS_RETENTION": "30d"}) == timedelta(days=30)
    for bad, words in [("soon", "not a duration"), ("2h", "at least 1d")]:
        with pytest.raises(RetentionError, match=words):
            retention_from_env({"KEYTURN_PROCESSED_EVENTS_RETENTION": bad})


def test_beat_prunes_hourly() -> None:
    from service.settings import Settings
    from workers.celery_app import celery_config

    entry = celery_config(Settings())["beat_schedule"]["keyturn.prune_processed_events"]
    assert entry == {"task": "keyturn.prune_processed_events", "schedule": 3600.0}
