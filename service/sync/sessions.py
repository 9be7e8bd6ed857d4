"""sync for role_sessions targets: the cuts that end people's open sessions of a role (service/core/cuts.py).

While a person's access is live their cut is already armed at its expiry, so IAM refuses their open
sessions at that second with no worker; when it ends early the cut moves to the end. The cuts are spread
over the role's pages (service/aws/session_pages.py); a page that gains a cut is written before a page that
only loses one, and no cut moves between pages, so no cut is ever missing between two writes.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select

from service.aws.errors import LimitExceeded, SyncConflict, TargetGone, is_not_found
from service.aws.gateway import AwsGateway
from service.aws.session_pages import SessionPages
from service.core.cuts import PersonCut, desired_cuts, place
from service.core.policy import Document, canonical, rebuild, same_statements, size_without_whitespace, split
from service.core.states import LIVE_GRANT_STATES, GrantState
from service.core.targets import TargetKind, TargetRef
from service.operations.context import Context
from service.store.models import Grant
from service.sync.state import Plan

LONGEST_SESSION = timedelta(hours=12)  # IAM's upper bound for MaxSessionDuration


def sync_sessions(ctx: Context, aws: AwsGateway, ref: TargetRef, now: datetime, attempts: int) -> Plan:
    try:
        role = aws.role_info(ref)
    except Exception as exc:
        if is_not_found(exc):
            return Plan(gone=True, gone_reason=f"role {ref.name} does not exist")
        raise
    pages = aws.session_pages(ref)
    try:
        return _sync_pages(pages, wanted_cuts(ctx, ref, role, now), attempts)
    except TargetGone as exc:
        return Plan(gone=True, gone_reason=str(exc))


def wanted_cuts(ctx: Context, ref: TargetRef, role: dict[str, Any], now: datetime) -> list[PersonCut]:
    """The cuts the database wants on this role (`role` is IAM's GetRole answer): its desired state."""
    max_session = timedelta(seconds=int(role.get("MaxSessionDuration", 3600)))
    # Grants remember their cut's target (cut_key); rows from before that are found by the catalogue.
    role_ids = [r.id for r in ctx.catalog.roles.values() if r.account == ref.account and r.role_name == ref.name]
    with ctx.store() as session:
        grants = session.execute(select(Grant).where(
            or_(Grant.cut_key == ref.key, and_(Grant.cut_key.is_(None), Grant.role_id.in_(role_ids))),
            Grant.session_name.is_not(None),
            or_(Grant.ended_at.is_(None), Grant.ended_at >= now - LONGEST_SESSION),
        )).scalars().all()
    ends = []
    for g in grants:
        if g.state == GrantState.FAILED.value:
            continue
        live = g.state in {s.value for s in LIVE_GRANT_STATES} and g.expires_at > now
        ended = g.expires_at
        if g.end_requested_at is not None and g.end_requested_at < g.expires_at:
            # IAM compares times to the second: a session opened in the very second of an early end, before
            # it, must be cut too, so the cut takes the next whole second (fail closed).
            ended = min(g.expires_at, _next_second(g.end_requested_at))
        person = g.identity_key or g.principal_arn
        ends.append((person, f"{role['RoleId']}:{g.session_name}", g.expires_at if live else ended, live,
                     g.activated_at is not None, g.target_key.startswith(f"{TargetKind.GROUP.value}:")))
    return desired_cuts(ends, now, max_session)


def _next_second(moment: datetime) -> datetime:
    whole = moment.replace(microsecond=0)
    return whole if whole == moment else whole + timedelta(seconds=1)


def page_hash(docs: dict[int, Document | None]) -> str | None:
    parts = [f"{p}={canonical(d)}" for p, d in sorted(docs.items()) if d and d.get("Statement")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] if parts else None


def _sync_pages(pages: SessionPages, cuts: list[PersonCut], attempts: int) -> Plan:
    live = pages.read_all()
    capacity = pages.capacity()
    owned_now = {p: split(d)[1] for p, d in live.items()}
    placement = place(cuts, owned_now, capacity)
    new = {p: rebuild(live[p], placement.pages.get(p, [])) for p in live}
    changed = [p for p in live if canonical(new[p] if new[p].get("Statement") else None) != canonical(live[p])]
    before_sids = {str(s.get("Sid")) for st in owned_now.values() for s in st}
    after_sids = {str(s["Sid"]) for st in placement.pages.values() for s in st}

    def gains(p: int) -> bool:
        have = {canonical(s) for s in owned_now[p]}
        return any(canonical(s) not in have for s in placement.pages.get(p, []))

    # Pages that gain (or change) a cut first, then those that only lose: a person is never uncovered.
    for p in sorted(changed, key=lambda p: (not gains(p), p)):
        problem = _over(new[p], capacity[p])
        if problem:
            raise LimitExceeded(f"session cuts, page {p}: {problem}")
        pages.write(p, new[p])
    _verify(pages, placement.pages, attempts)
    plan = Plan(wrote=bool(changed), hash_before=page_hash(live),
                hash_after=page_hash({p: new[p] for p in new}),
                added=sorted(after_sids - before_sids), removed=sorted(before_sids - after_sids),
                verified={"statements": [s for p in sorted(placement.pages) for s in placement.pages[p]]})
    plan.unplaced = [c.person for c in placement.unplaced]
    return plan


def _over(document: Document, capacity: int) -> str | None:
    size = size_without_whitespace(document) if document.get("Statement") else 0
    return f"{size} characters; the room is {capacity}" if size > capacity else None


def _verify(pages: SessionPages, wanted: dict[int, list[Any]], attempts: int) -> None:
    """Read every page back until IAM shows exactly our cuts (IAM reads can lag a write)."""
    for attempt in range(attempts):
        back = pages.read_all()
        if all(same_statements(split(back[p])[1], wanted.get(p, [])) for p in back):
            return
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise SyncConflict("the session cuts read back do not match what was written")
