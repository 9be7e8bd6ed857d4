"""Retention of processed_events: Slack delivery ids and the notifier's send-once keys are needed only while
a retry or redelivery can still arrive (Slack retries within minutes; a queued task within hours), yet any
workspace member adds a row by opening App Home. Rows older than the retention are pruned periodically
(workers: keyturn.prune_processed_events, hourly)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import timedelta

from service.core.durations import DurationError, format_duration, parse_duration
from service.operations.context import Context
from service.store import repo

log = logging.getLogger(__name__)

ENV = "KEYTURN_PROCESSED_EVENTS_RETENTION"
DEFAULT_RETENTION = timedelta(days=7)
# Shorter would forget a delivery Slack or the broker may still repeat (Redis' visibility timeout, task
# retries with backoff), and a repeated DM or a second App Home refresh would follow.
MIN_RETENTION = timedelta(days=1)
PRUNE_EVERY = timedelta(hours=1)
BATCH = 5000  # rows per transaction: a table that grew for months is pruned without one long lock


class RetentionError(ValueError):
    """KEYTURN_PROCESSED_EVENTS_RETENTION holds a value Keyturn cannot use."""


def retention_from_env(env: Mapping[str, str] | None = None) -> timedelta:
    """The retention from the environment (e.g. `7d`), at least MIN_RETENTION; the default when unset."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION
    try:
        value = parse_duration(raw)
    except DurationError as exc:
        raise RetentionError(f"{ENV}: {exc}") from exc
    if value < MIN_RETENTION:
        raise RetentionError(f"{ENV}: at least {format_duration(MIN_RETENTION)} (Slack and the queue may still "
                             f"repeat a delivery), not {raw!r}")
    return value


def prune_processed_events(ctx: Context, *, retention: timedelta, batch: int = BATCH) -> int:
    """Delete processed_events older than `retention`, batch by batch; how many rows went."""
    before = ctx.now() - max(retention, MIN_RETENTION)
    pruned = 0
    while True:
        with ctx.store.begin() as session:
            n = repo.prune_processed_events(session, before, batch)
        pruned += n
        if n < batch:
            break
    if pruned:
        log.info("pruned %d processed events older than %s", pruned, format_duration(retention))
    return pruned
