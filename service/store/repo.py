"""Repository functions: compare-and-set transitions, audit events, target bookkeeping."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from service.core.states import (
    ENDING_GRANT_STATES,
    LIVE_GRANT_STATES,
    EndReason,
    GrantState,
    RequestState,
    can_grant_move,
    can_request_move,
)
from service.store.db import PENDING_AUDIT_LOGS
from service.store.models import AccessRequest, AuditEvent, Grant, ProcessedEvent, Target


def audit(
    session: Session,
    *,
    at: datetime,
    actor: str,
    action: str,
    request_id: int | None = None,
    grant_id: int | None = None,
    target_key: str | None = None,
    hash_before: str | None = None,
    hash_after: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append one audit event in the caller's transaction."""
    event = AuditEvent(
        at=at, actor=actor, action=action, request_id=request_id, grant_id=grant_id, target_key=target_key,
        hash_before=hash_before, hash_after=hash_after, detail={k: v for k, v in detail.items() if v is not None},
    )
    session.add(event)
    # Logged by the session factory after commit: the log never shows a transition that was rolled back.
    session.info.setdefault(PENDING_AUDIT_LOGS, []).append({
        "action": action, "actor": actor, "access_request_id": request_id, "grant_id": grant_id,
        "target": target_key, "hash_before": hash_before, "hash_after": hash_after})
    return event


def move_request(
    session: Session, request_id: int, src: RequestState, dst: RequestState, **values: Any
) -> bool:
    """Compare-and-set a request's state: True only for the one caller that made the move."""
    if not can_request_move(src, dst):
        raise ValueError(f"request transition {src} -> {dst} is not allowed")
    result = session.execute(
        update(AccessRequest)
        .where(AccessRequest.id == request_id, AccessRequest.state == src.value)
        .values(state=dst.value, version=AccessRequest.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def move_grant(session: Session, grant_id: int, src: GrantState, dst: GrantState, **values: Any) -> bool:
    """Compare-and-set a grant's state: True only for the one caller that made the move."""
    if not can_grant_move(src, dst):
        raise ValueError(f"grant transition {src} -> {dst} is not allowed")
    result = session.execute(
        update(Grant)
        .where(Grant.id == grant_id, Grant.state == src.value)
        .values(state=dst.value, version=Grant.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def expire_grant(session: Session, grant: Grant, now: datetime) -> bool:
    """Move a live grant past its expiry to ending, audited; True only for the caller that moved it. One
    still provisioning was never confirmed in IAM, and the audit says so (never_written)."""
    if not move_grant(session, grant.id, GrantState(grant.state), GrantState.ENDING,
                      end_reason=EndReason.EXPIRED.value, end_requested_at=now):
        return False
    audit(session, at=now, actor="keyturn", action="grant.expiring", grant_id=grant.id,
          request_id=grant.request_id, target_key=grant.target_key,
          never_written=grant.state == GrantState.PROVISIONING.value or None)
    return True


UNMAPPED = "the requester is no longer mapped to this identity in the catalogue"


def end_unmapped_grant(session: Session, grant: Grant, now: datetime, reason: str = UNMAPPED) -> bool:
    """End a live grant the catalogue no longer stands behind (its person unmapped or remapped, its role
    gone or moved); audited as grant.unmapped with the reason."""
    if not move_grant(session, grant.id, GrantState(grant.state), GrantState.ENDING,
                      end_reason=EndReason.REVOKED.value, end_requested_at=now, ended_by="keyturn",
                      failure_reason=reason):
        return False
    audit(session, at=now, actor="keyturn", action="grant.unmapped", grant_id=grant.id,
          request_id=grant.request_id, target_key=grant.target_key, identity=grant.identity_key,
          reason=reason)
    return True


def mark_dirty(session: Session, target_key: str, now: datetime) -> None:
    """Note that a target's desired state changed; the sweeper re-enqueues it if the wake-up is lost.

    An upsert, not read-then-insert: two first approvals on one target at once must not collide on its key.
    """
    _insert_target(session, target_key, now)
    session.execute(
        update(Target).where(Target.key == target_key, Target.dirty_since.is_(None)).values(dirty_since=now)
        .execution_options(synchronize_session=False)
    )


def _insert_target(session: Session, target_key: str, dirty_since: datetime | None) -> None:
    insert = postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Target).values(key=target_key, dirty_since=dirty_since, failures=0)
        .on_conflict_do_nothing(index_elements=["key"])
    )


def ensure_target(session: Session, target_key: str, *, dirty_since: datetime | None = None) -> Target:
    """The target's row, created if missing: an upsert, so a sync and an approval creating it at once
    do not collide on its key."""
    _insert_target(session, target_key, dirty_since)
    target = session.get(Target, target_key)
    assert target is not None
    return target


def lock_request(session: Session, request_id: int) -> AccessRequest | None:
    """Read a request and hold its row until commit (PostgreSQL; SQLite's writer lock already serialises)."""
    return session.execute(
        select(AccessRequest).where(AccessRequest.id == request_id).with_for_update()
    ).scalar_one_or_none()


def grants_for_target(session: Session, target_key: str) -> Sequence[Grant]:
    """Grants whose access is wanted, or whose removal is not yet verified, on one target."""
    states = [s.value for s in LIVE_GRANT_STATES | ENDING_GRANT_STATES]
    return session.execute(
        select(Grant).where(Grant.target_key == target_key, Grant.state.in_(states)).order_by(Grant.id)
    ).scalars().all()


def grants_in(session: Session, states: Iterable[GrantState]) -> Sequence[Grant]:
    return session.execute(
        select(Grant).where(Grant.state.in_([s.value for s in states])).order_by(Grant.expires_at)
    ).scalars().all()


def prune_processed_events(session: Session, before: datetime, limit: int) -> int:
    """Delete up to `limit` processed_events recorded before `before` (oldest first); how many went."""
    old = select(ProcessedEvent.event_id).where(ProcessedEvent.at < before).order_by(ProcessedEvent.at).limit(limit)
    ids = session.execute(old).scalars().all()
    if not ids:
        return 0
    result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(ids))
                             .execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]
