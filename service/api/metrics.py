"""Prometheus /metrics, computed from the database (and a Redis counter) at scrape time.

Reading the source of truth on each scrape keeps the numbers right across gunicorn workers, Celery
workers and restarts, with no multiprocess registry to manage.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from service.core.states import GrantState, RequestState
from service.store.models import AccessRequest, AuditEvent, Grant

LAG_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
SLACK_ERRORS_KEY = "keyturn:metrics:slack_errors"


class KeyturnCollector(Collector):
    def __init__(self, store: Any, redis_client: Any, *, overdue_after: timedelta = timedelta(seconds=60),
                 lag_window: timedelta = timedelta(hours=24)):
        self.store, self.redis = store, redis_client
        self.overdue_after, self.lag_window = overdue_after, lag_window

    def collect(self) -> Iterator[Any]:
        now = datetime.now(UTC)
        with self.store() as session:
            requests = dict(session.execute(
                select(AccessRequest.state, func.count()).group_by(AccessRequest.state)).all())
            grants = dict(session.execute(select(Grant.state, func.count()).group_by(Grant.state)).all())
            actions = dict(session.execute(
                select(AuditEvent.action, func.count()).where(
                    AuditEvent.action.in_(["iam.write", "drift.repaired", "sync.error"])
                ).group_by(AuditEvent.action)).all())
            overdue = session.execute(select(func.count()).select_from(Grant).where(
                Grant.state.in_([GrantState.PROVISIONING.value, GrantState.ACTIVE.value, GrantState.ENDING.value,
                                 GrantState.REVOCATION_FAILED.value]),
                Grant.expires_at < now - self.overdue_after)).scalar_one()
            ended = session.execute(select(Grant.state, Grant.expires_at, Grant.end_requested_at, Grant.ended_at)
                                    .where(Grant.ended_at >= now - self.lag_window,
                                           Grant.state.in_([GrantState.EXPIRED.value, GrantState.REVOKED.value]))
                                    ).all()
        g = GaugeMetricFamily("keyturn_requests", "Access requests by state", labels=["state"])
        for state in RequestState:
            g.add_metric([state.value], float(requests.get(state.value, 0)))
        yield g
        g = GaugeMetricFamily("keyturn_grants", "Grants by state", labels=["state"])
        for gstate in GrantState:
            g.add_metric([gstate.value], float(grants.get(gstate.value, 0)))
        yield g
        yield GaugeMetricFamily("keyturn_active_grants", "Grants whose access is in IAM now",
                                value=float(grants.get(GrantState.ACTIVE.value, 0)))
        yield GaugeMetricFamily("keyturn_overdue_revocations",
                                "Grants past expiry by more than the grace period whose removal is not verified",
                                value=float(overdue))
        yield CounterMetricFamily("keyturn_iam_writes", "IAM documents written by sync",
                                  value=float(actions.get("iam.write", 0)))
        yield CounterMetricFamily("keyturn_drift_repairs", "IAM writes that repaired drift (no grant changed)",
                                  value=float(actions.get("drift.repaired", 0)))
        yield CounterMetricFamily("keyturn_aws_errors", "Failed sync attempts (AWS errors)",
                                  value=float(actions.get("sync.error", 0)))
        try:
            slack_errors = float(self.redis.get(SLACK_ERRORS_KEY) or 0)
        except Exception:
            slack_errors = float("nan")
        yield CounterMetricFamily("keyturn_slack_errors", "Slack API calls that failed", value=slack_errors)
        yield self._lag(ended)

    def _lag(self, rows: list[Any]) -> HistogramMetricFamily:
        """Seconds from the moment access should end (expiry or revoke click) to verified removal."""
        lags = []
        for state, expires_at, requested_at, ended_at in rows:
            due = expires_at if state == GrantState.EXPIRED.value else (requested_at or expires_at)
            lags.append(max(0.0, (ended_at - due).total_seconds()))
        buckets = [(str(b), float(sum(1 for x in lags if x <= b))) for b in LAG_BUCKETS]
        buckets.append(("+Inf", float(len(lags))))
        return HistogramMetricFamily("keyturn_revocation_lag_seconds",
                                     f"Expiry or revoke to verified removal, grants ended in the last "
                                     f"{int(self.lag_window.total_seconds() // 3600)}h",
                                     buckets=buckets, sum_value=float(sum(lags)))
