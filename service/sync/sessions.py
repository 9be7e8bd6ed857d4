"""sync for role_sessions targets: cut already-issued sessions of people whose access ended."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from service.aws.errors import TargetGone, is_not_found
from service.aws.gateway import AwsGateway
from service.core.policy import SessionEnd, Statement, session_denies, session_deny_statement
from service.core.states import LIVE_GRANT_STATES, GrantState
from service.core.targets import TargetRef
from service.operations.context import Context
from service.store.models import Grant
from service.sync.document import sync_document_to
from service.sync.state import Plan

LONGEST_SESSION = timedelta(hours=12)  # IAM's upper bound for MaxSessionDuration


def sync_sessions(ctx: Context, aws: AwsGateway, ref: TargetRef, now: datetime, attempts: int) -> Plan:
    try:
        role = aws.role_info(ref)
    except Exception as exc:
        if is_not_found(exc):
            return Plan(gone=True, gone_reason=f"role {ref.name} does not exist")
        raise
    statements = session_deny_statements(ctx, ref, role, now)
    try:
        return sync_document_to(aws.document(ref), statements, attempts)
    except TargetGone as exc:
        return Plan(gone=True, gone_reason=str(exc))


def session_deny_statements(ctx: Context, ref: TargetRef, role: dict[str, Any], now: datetime) -> list[Statement]:
    """The denies the database wants on this role (`role` is IAM's GetRole answer): its desired state."""
    max_session = timedelta(seconds=int(role.get("MaxSessionDuration", 3600)))
    role_ids = [r.id for r in ctx.catalog.roles.values() if r.account == ref.account and r.role_name == ref.name]
    with ctx.store() as session:
        grants = session.execute(select(Grant).where(
            Grant.role_id.in_(role_ids), Grant.session_name.is_not(None),
            or_(Grant.ended_at.is_(None), Grant.ended_at >= now - LONGEST_SESSION),
        )).scalars().all()
    ends = []
    for g in grants:
        if g.state == GrantState.FAILED.value:
            continue
        live = g.state in {s.value for s in LIVE_GRANT_STATES} and g.expires_at > now
        ended = min(g.expires_at, g.end_requested_at or g.expires_at)
        ends.append(SessionEnd(str(g.session_name), None if live else ended, g.identity_key or g.principal_arn))
    denies = session_denies(ends, now, max_session)
    return [session_deny_statement(role["RoleId"], cut.session_name, cut.ended_at, person)
            for person, cut in sorted(denies.items())]
