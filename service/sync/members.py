"""sync for group_membership targets: add wanted users, remove only memberships Keyturn added."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime

from sqlalchemy import delete, select

from service.aws.errors import SyncConflict, TargetGone
from service.aws.groups import GroupMembers
from service.core.states import LIVE_GRANT_STATES, GrantState
from service.operations.context import Context
from service.store.models import OwnedMembership
from service.sync.state import GrantSnap, Plan


def _hash(members: set[str]) -> str:
    return hashlib.sha256(",".join(sorted(members)).encode()).hexdigest()[:16]


def sync_members(
    ctx: Context, group: GroupMembers, target_key: str, snaps: list[GrantSnap], now: datetime, attempts: int
) -> Plan:
    try:
        live = group.read()
    except TargetGone as exc:
        return Plan(gone=True, gone_reason=str(exc))
    wanted_snaps = [s for s in snaps if s.state in LIVE_GRANT_STATES and s.expires_at > now]
    failed: dict[int, str] = {}
    wanted: set[str] = set()
    for user in sorted({s.lease_key for s in wanted_snaps}):
        problem = None if user in live else group.limit_problem(user)
        if problem:
            failed.update({s.id: problem for s in wanted_snaps
                           if s.lease_key == user and s.state is GrantState.PROVISIONING})
            if all(s.state is GrantState.PROVISIONING for s in wanted_snaps if s.lease_key == user):
                continue
        wanted.add(user)
    with ctx.store.begin() as session:
        owned = set(session.execute(
            select(OwnedMembership.member).where(OwnedMembership.target_key == target_key)
        ).scalars())
        to_add = wanted - live
        # Ownership is recorded before the add, so a crash right after the write still knows it is ours.
        for user in to_add - owned:
            session.add(OwnedMembership(target_key=target_key, member=user, added_at=now))
    to_remove = owned & (live - wanted)
    for user in sorted(to_add):
        group.add(user)
    for user in sorted(to_remove):
        group.remove(user)
    after = _verify(group, wanted, to_remove, attempts)
    with ctx.store.begin() as session:
        # Forget ownership of anyone no longer a member (removed by us, or by someone else).
        gone = (owned | to_add) - after
        if gone:
            session.execute(delete(OwnedMembership).where(
                OwnedMembership.target_key == target_key, OwnedMembership.member.in_(sorted(gone))
            ))
    return Plan(
        wrote=bool(to_add or to_remove), hash_before=_hash(live), hash_after=_hash(after),
        desired_keys=wanted, failed=failed, added=sorted(to_add), removed=sorted(to_remove),
        active_keys_with_sid={u: u for u in wanted}, verified={"members": sorted(after & (owned | to_add))},
    )


def _verify(group: GroupMembers, wanted: set[str], removed: set[str], attempts: int) -> set[str]:
    for attempt in range(attempts):
        back = group.read()
        if wanted <= back and not (removed & back):
            return back
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise SyncConflict(f"group {group.group} does not show the expected members yet")
