"""What the console's pages read: plain rows for the templates, always narrowed by the reader's scope."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, true

from service.api.scope import Scope
from service.catalog.model import Role
from service.core.cuts import armed_sid
from service.core.durations import format_duration
from service.core.policy import owned_sid
from service.core.states import LIVE_GRANT_STATES, RequestState
from service.operations.context import Context, NotFound
from service.slack.views import profile_snippet
from service.store.models import AccessRequest, Approval, AuditEvent, Grant, Target

LIVE = sorted(s.value for s in LIVE_GRANT_STATES)
RECENT_ROLES = 5


def left(until: datetime, now: datetime) -> str:
    """Time left, to the minute (or seconds under one)."""
    seconds = int((until - now).total_seconds())
    if seconds <= 0:
        return "ending"
    return format_duration(timedelta(seconds=seconds if seconds < 60 else seconds - seconds % 60))


@dataclass
class LiveGrant:
    grant: Grant
    role: Role | None
    left: str
    switch_url: str | None
    profile: str | None


@dataclass
class MyAccess:
    grants: list[LiveGrant] = field(default_factory=list)
    pending: list[AccessRequest] = field(default_factory=list)
    recent: list[Role] = field(default_factory=list)


def my_access(ctx: Context, user: str) -> MyAccess:
    now = ctx.now()
    out = MyAccess()
    with ctx.store() as session:
        grants = session.scalars(select(Grant).where(Grant.requester == user, Grant.state.in_(LIVE))
                                 .order_by(Grant.expires_at)).all()
        out.pending = list(session.scalars(select(AccessRequest).where(
            AccessRequest.requester == user, AccessRequest.state == RequestState.PENDING.value)
            .order_by(AccessRequest.id.desc())))
        history = session.scalars(select(Grant.role_id).where(Grant.requester == user)
                                  .order_by(Grant.id.desc()).limit(50)).all()
    for grant in grants:
        role = ctx.catalog.role(grant.role_id)
        account = ctx.catalog.accounts.get(role.account) if role else None
        mfa = grant.principal_arn.replace(":user/", ":mfa/") if role and role.require_mfa else None
        out.grants.append(LiveGrant(grant, role, left(grant.expires_at, now),
                                    role.switch_role_url(account.label if account else None) if role else None,
                                    profile_snippet(role, grant, now, mfa) if role else None))
    for role_id in dict.fromkeys(history):  # the console's own history: the last roles used, newest first
        role = ctx.catalog.role(role_id)
        if role is not None and len(out.recent) < RECENT_ROLES:
            out.recent.append(role)
    return out


def votes_of(ctx: Context, ids: Sequence[int]) -> dict[int, list[Approval]]:
    votes: dict[int, list[Approval]] = defaultdict(list)
    if ids:
        with ctx.store() as session:
            for vote in session.scalars(select(Approval).where(Approval.request_id.in_(ids)).order_by(Approval.id)):
                votes[vote.request_id].append(vote)
    return votes


def pending_for(ctx: Context, scope: Scope) -> list[AccessRequest]:
    """Pending requests of the roles this person approves (every pending request for an admin)."""
    stmt = select(AccessRequest).where(AccessRequest.state == RequestState.PENDING.value)
    if not scope.admin:
        stmt = stmt.where(AccessRequest.role_id.in_(sorted(scope.roles)))
    with ctx.store() as session:
        return list(session.scalars(stmt.order_by(AccessRequest.id)))


def live_grants(ctx: Context, scope: Scope) -> list[Grant]:
    with ctx.store() as session:
        return list(session.scalars(scope.where(select(Grant).where(Grant.state.in_(LIVE)), Grant)
                                    .order_by(Grant.expires_at)))


@dataclass
class GrantDetail:
    grant: Grant
    request: AccessRequest | None
    timeline: list[AuditEvent]
    target: Target | None
    cut: Target | None = None
    in_iam: list[str] = field(default_factory=list)  # this grant's statement(s) / membership, as last read back
    cut_in_iam: list[str] = field(default_factory=list)  # the person's session cut, as last read back


def grant_in_iam(grant: Grant, target: Target | None) -> list[str]:
    """What of the target's last read-back is this grant's: its statement (by its Sid) or its membership."""
    owned = (target.last_owned if target else None) or {}
    if "members" in owned:
        return [f"member: {m}" for m in owned["members"] if m == grant.lease_key]
    sid = owned_sid(grant.lease_key)
    return [json.dumps(s, indent=2) for s in owned.get("statements", []) if s.get("Sid") == sid]


def cut_in_iam(grant: Grant, cut: Target | None) -> list[str]:
    """The person's session cut as last read back: their own armed deny, or a packed one naming their session."""
    owned = (cut.last_owned if cut else None) or {}
    armed = armed_sid(grant.identity_key or grant.principal_arn)
    session = f":{grant.session_name}" if grant.session_name else None

    def theirs(s: dict[str, Any]) -> bool:
        ids = (s.get("Condition") or {}).get("StringEquals", {}).get("aws:userid", [])
        ids = [ids] if isinstance(ids, str) else ids
        return s.get("Sid") == armed or (session is not None and any(str(i).endswith(session) for i in ids))

    return [json.dumps(s, indent=2) for s in owned.get("statements", []) if theirs(s)]


def grant_detail(ctx: Context, scope: Scope, grant_id: int) -> GrantDetail:
    """A grant the reader may see, its request, and its timeline: its own events, its request's, and the writes
    of its target while it was held (with the document hashes before and after)."""
    with ctx.store() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or not scope.sees(grant):
            raise NotFound(f"no grant {grant_id}")
        request = session.get(AccessRequest, grant.request_id)
        held = AuditEvent.target_key == grant.target_key
        since = request.created_at if request else grant.starts_at
        stmt = select(AuditEvent).where(or_(
            AuditEvent.grant_id == grant.id, AuditEvent.request_id == grant.request_id,
            held & (AuditEvent.at >= since) & ((AuditEvent.at <= grant.ended_at) if grant.ended_at else true())))
        timeline = list(session.scalars(stmt.order_by(AuditEvent.id)))
        target = session.get(Target, grant.target_key)
        cut = session.get(Target, grant.cut_key) if grant.cut_key else None
        return GrantDetail(grant, request, timeline, target, cut, grant_in_iam(grant, target), cut_in_iam(grant, cut))


AUDIT_FILTERS = ("actor", "action", "request_id", "grant_id", "target_key")


def audit(ctx: Context, filters: dict[str, Any], limit: int = 500) -> list[AuditEvent]:
    stmt = select(AuditEvent)
    for name in AUDIT_FILTERS:
        if filters.get(name) not in (None, ""):
            stmt = stmt.where(getattr(AuditEvent, name) == filters[name])
    with ctx.store() as session:
        return list(session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Chain:
    target_key: str
    writes: int
    broken_at: int | None  # the first event whose "before" is not the previous event's "after"

    @property
    def intact(self) -> bool:
        return self.broken_at is None


def chains(ctx: Context) -> list[Chain]:
    """Per target, the IAM documents' hashes in order: every write starts from the document the one before left
    (a change made outside Keyturn is recorded as iam.changed, which keeps the chain whole)."""
    last: dict[str, str | None] = {}
    writes: dict[str, int] = defaultdict(int)
    broken: dict[str, int] = {}
    with ctx.store() as session:
        rows = session.execute(select(AuditEvent.id, AuditEvent.target_key, AuditEvent.hash_before,
                                      AuditEvent.hash_after).where(AuditEvent.target_key.is_not(None),
                                                                   AuditEvent.hash_after.is_not(None)
                                                                   | AuditEvent.hash_before.is_not(None))
                               .order_by(AuditEvent.id)).tuples().all()
    for event_id, key, before, after in rows:
        assert key is not None
        if key in last and last[key] != before and key not in broken:
            broken[key] = event_id
        last[key] = after
        writes[key] += 1
    return [Chain(key, writes[key], broken.get(key)) for key in sorted(writes)]
