"""Thin Celery tasks: each fetches the runtime and calls one service function."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import shared_task
from flask import current_app
from slack_sdk.errors import SlackApiError

from service.api.metrics import SLACK_ERRORS_KEY
from service.aws.errors import error_code
from service.locks import LockBusy
from service.operations.sweep import reconcile_all as reconcile_all_targets
from service.operations.sweep import sweep as sweep_grants
from service.runtime import CeleryDispatcher, Runtime
from service.slack.interactions import run_queued, slack_answer, unexpected
from service.sync.state import record_sync_failure
from service.sync.target import sync_target as sync_one

log = logging.getLogger(__name__)


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["keyturn"]
    return rt


@shared_task(bind=True, name="keyturn.sync_target", acks_late=True, max_retries=None)
def sync_target(self: Any, target_key: str) -> dict[str, Any]:
    """Make one IAM target match the database, verify it, record the outcome."""
    rt = runtime()
    if isinstance(rt.ctx.dispatch, CeleryDispatcher):
        # Cleared before reading: any change committed from here on queues a fresh sync.
        rt.ctx.dispatch.clear_queued(target_key)
    try:
        report = sync_one(rt.ctx, aws=rt.aws, locks=rt.locks, target_key=target_key)
    except LockBusy as exc:
        raise self.retry(countdown=0.5 + random.random(), exc=exc) from exc
    except Exception as exc:
        attempts = self.request.retries
        final = attempts >= rt.settings.sync_max_retries
        message = f"{error_code(exc)}: {exc}"
        log.warning("sync failed", extra={"target": target_key, "attempt": attempts, "error": message})
        record_sync_failure(rt.ctx, target_key=target_key, error=message, final=final)
        if final:
            return {"target": target_key, "error": message}
        countdown = min(2**attempts, 60) * (0.5 + random.random())
        raise self.retry(countdown=countdown, exc=exc) from exc
    return {"target": target_key, "wrote": report.wrote, "activated": report.activated, "ended": report.ended}


@shared_task(bind=True, name="keyturn.sweep", acks_late=True)
def sweep(self: Any) -> dict[str, int]:
    """End grants past expiry, time out stale requests, re-send lost sync wake-ups."""
    rt = runtime()
    if not self.request.called_directly and _swept_recently(rt):
        return {"skipped": 1}
    # Arm clean-ups for the expiries before the next sweep (and a little more, for a late one).
    report = sweep_grants(rt.ctx, lookahead=rt.settings.sweep_interval * 2)
    return {"expiring": len(report.expiring), "timed_out": len(report.timed_out), "resent": len(report.resent),
            "armed": len(report.armed)}


def _swept_recently(rt: Runtime) -> bool:
    """Beat queues one sweep per interval even while no worker runs: after an outage the backlog would run
    one by one, ahead of the syncs the first of them queued (bench/RESULTS.md, revocation after a restart).
    A sweep started less than half an interval after another has nothing to add; beat's regular ones are
    an interval apart and never skipped."""
    window_ms = max(1, int(rt.settings.sweep_interval.total_seconds() * 500))
    try:
        return not rt.redis.set("keyturn:sweep:recent", "1", nx=True, px=window_ms)
    except Exception:
        return False  # without Redis, sweep anyway: the sweep is idempotent


@shared_task(name="keyturn.reconcile_all", acks_late=True)
def reconcile_all() -> int:
    """Sync every known target: repairs drift and finishes interrupted work."""
    return len(reconcile_all_targets(runtime().ctx))


@shared_task(name="keyturn.prune_processed_events", acks_late=True)
def prune_processed_events() -> int:
    """Forget Slack deliveries and send-once keys past their retention (service/operations/retention.py)."""
    from service.operations.retention import prune_processed_events as prune
    from service.operations.retention import retention_from_env

    return prune(runtime().ctx, retention=retention_from_env())


@shared_task(bind=True, name="keyturn.slack_interaction", acks_late=True, max_retries=5, time_limit=60,
             soft_time_limit=45)
def slack_interaction(self: Any, kind: str, payload: dict[str, Any], sealed: Any = None) -> str | None:
    """Carry out a Slack interaction the web acknowledged (file, list, approve) and answer the user; one the
    web did not seal (written into Redis by someone else), altered or replayed is refused: its reason is
    logged and returned."""
    notifier = current_app.extensions.get("keyturn.notifier")
    rt = runtime()
    answer = slack_answer(payload if isinstance(payload, dict) else {},
                          notifier.client if notifier is not None else None, rt.settings.slack_response_origins)
    try:
        return run_queued(rt.ctx, kind, payload, sealed, answer, key=rt.settings.task_signing_key,
                          max_age=rt.settings.task_max_age)
    except Exception as exc:
        if self.request.retries < self.max_retries:
            # Transient (the database restarting…): filing and voting are idempotent, so try again.
            raise self.retry(countdown=min(2**self.request.retries, 30) * (0.5 + random.random()), exc=exc) from exc
        # Replaces the "Filing…" placeholder; never an approvers' message.
        answer(unexpected(exc, f"slack interaction {kind}"), kind != "approve")
        return None


@shared_task(bind=True, name="keyturn.notify", acks_late=True, max_retries=8)
def notify(self: Any, event: str, **ids: Any) -> None:
    """Tell people about a state change; a failure here never touches access."""
    notifier = current_app.extensions.get("keyturn.notifier")
    if notifier is None:
        log.info("event %s %s", event, ids)
        return
    try:
        notifier.handle(event, **ids)
    except SlackApiError as exc:
        try:
            runtime().redis.incr(SLACK_ERRORS_KEY)
        except Exception:  # noqa: S110 - a metric must never break the notification path
            pass
        status = exc.response.status_code if exc.response is not None else 0
        headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()} if exc.response is not None else {}
        retry_after = headers.get("retry-after")
        if isinstance(retry_after, list):
            retry_after = retry_after[0] if retry_after else None
        log.warning("slack notification failed: %s %s", event, exc.response.get("error") if exc.response else exc)
        if status == 429 or status >= 500:
            countdown = float(retry_after or min(2**self.request.retries, 60))
            raise self.retry(countdown=countdown, exc=exc) from exc
        # A permanent Slack error (channel_not_found…) is logged, never retried forever.
