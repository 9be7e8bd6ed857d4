"""sync for identity_center targets: one USER account assignment per person with a live grant.

The shape of the group-membership sync: ownership is recorded (in `owned_memberships`, the member being the
identity-store user id) before the assignment is created, only owned assignments are ever deleted, and the
result is read back. An assignment Keyturn did not make (a user's or a group's) is never deleted: it is
logged and audited as `assignment.foreign` whenever the set of such assignments changes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.aws.errors import SyncConflict, TargetGone
from service.aws.identity_center import USER, AccountAssignments, Assignment, AssignmentFailed, UserNotFound
from service.core.states import LIVE_GRANT_STATES, GrantState
from service.operations.context import Context
from service.store import repo
from service.store.models import AuditEvent, OwnedMembership
from service.sync.state import GrantSnap, Plan

log = logging.getLogger(__name__)
FOREIGN = "assignment.foreign"


def _hash(assignments: set[Assignment]) -> str:
    return hashlib.sha256(",".join(a.key for a in sorted(assignments)).encode()).hexdigest()[:16]


def _users(assignments: set[Assignment]) -> set[str]:
    return {a.principal_id for a in assignments if a.principal_type == USER}


def _wanted(center: AccountAssignments, snaps: list[GrantSnap], now: datetime,
            failed: dict[int, str]) -> dict[str, str]:
    """identity-store user id -> lease key, for every person with a live grant; unknown users fail."""
    live = [s for s in snaps if s.state in LIVE_GRANT_STATES and s.expires_at > now and s.identity is not None]
    wanted: dict[str, str] = {}
    for lease in sorted({s.lease_key for s in live}):
        grants = [s for s in live if s.lease_key == lease]
        identity = grants[0].identity
        try:
            user_id = center.user_id(str(identity.user_name if identity else ""))
        except UserNotFound as exc:
            # Only this person's grants fail (an active one ends, audited with the reason).
            failed.update({s.id: str(exc) for s in grants})
            continue
        wanted[user_id] = lease
    return wanted


def sync_assignments(
    ctx: Context, center: AccountAssignments, target_key: str, snaps: list[GrantSnap], now: datetime,
    attempts: int,
) -> Plan:
    try:
        live = center.read()
    except TargetGone as exc:
        return Plan(gone=True, gone_reason=str(exc))
    failed: dict[int, str] = {}
    wanted = _wanted(center, snaps, now, failed)
    present = _users(live)
    with ctx.store.begin() as session:
        owned = set(session.execute(
            select(OwnedMembership.member).where(OwnedMembership.target_key == target_key)
        ).scalars())
        to_add = set(wanted) - present
        # Ownership is recorded before the create, so a crash right after the write still knows it is ours.
        for user_id in to_add - owned:
            session.add(OwnedMembership(target_key=target_key, member=user_id, added_at=now))
    to_remove = owned & (present - set(wanted))
    for user_id in sorted(to_add):
        try:
            center.create(user_id)
        except AssignmentFailed as exc:
            lease = wanted.pop(user_id)
            failed.update({s.id: str(exc) for s in snaps
                           if s.lease_key == lease and s.state is GrantState.PROVISIONING})
    for user_id in sorted(to_remove):
        center.delete(user_id)
    after = _verify(center, set(wanted), to_remove, attempts)
    with ctx.store.begin() as session:
        # Forget ownership of any assignment that no longer exists (deleted by us, or by someone else).
        gone = (owned | to_add) - _users(after)
        if gone:
            session.execute(delete(OwnedMembership).where(
                OwnedMembership.target_key == target_key, OwnedMembership.member.in_(sorted(gone))
            ))
        _report_foreign(session, target_key, after, owned | to_add, now)
    return Plan(
        wrote=bool(to_add or to_remove), hash_before=_hash(live), hash_after=_hash(after),
        desired_keys=set(wanted.values()), failed=failed,
        added=sorted(Assignment(USER, u).key for u in to_add if u in wanted),
        removed=sorted(Assignment(USER, u).key for u in to_remove),
        active_keys_with_sid={Assignment(USER, u).key: lease for u, lease in wanted.items()},
        verified={"members": sorted(_users(after) & (owned | to_add))},
    )


def _report_foreign(session: Session, target_key: str, after: set[Assignment], ours: set[str],
                    now: datetime) -> None:
    """Audit the assignments Keyturn did not make when they differ from the last ones it reported."""
    foreign = sorted(a.key for a in after if not (a.principal_type == USER and a.principal_id in ours))
    last = session.execute(
        select(AuditEvent.detail).where(AuditEvent.action == FOREIGN, AuditEvent.target_key == target_key)
        .order_by(AuditEvent.id.desc()).limit(1)
    ).scalar()
    if foreign == ((last or {}).get("assignments") or []):
        return
    if foreign:
        log.warning("%s: %d assignment(s) Keyturn did not make (never removed by Keyturn): %s",
                    target_key, len(foreign), ", ".join(foreign))
    repo.audit(session, at=now, actor="keyturn", action=FOREIGN, target_key=target_key, assignments=foreign)


def _verify(center: AccountAssignments, wanted: set[str], removed: set[str], attempts: int) -> set[Assignment]:
    for attempt in range(attempts):
        back = center.read()
        users = _users(back)
        if wanted <= users and not (removed & users):
            return back
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise SyncConflict(f"{center.label} does not show the expected assignments yet")
