"""Filing a request for a catalogued role (or an extension of a grant)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.catalog.model import Role
from service.core.durations import format_duration
from service.core.identity import Identity
from service.core.rules import Reason, check_filing
from service.core.states import LIVE_GRANT_STATES, RequestState
from service.core.targets import TargetError
from service.operations.context import Context, NotFound, Refused
from service.operations.granting import create_grant, principal_of, target_of
from service.store import repo
from service.store.models import AccessRequest, Grant


@dataclass(frozen=True)
class Filed:
    request_id: int
    state: RequestState
    grant_id: int | None = None
    target_key: str | None = None


def request_access(
    ctx: Context,
    *,
    requester: str,
    role_id: str,
    duration: timedelta | None = None,
    reason: str | None = None,
    ticket: str | None = None,
    team_id: str | None = None,
    extends_grant_id: int | None = None,
    client_token: str | None = None,
) -> Filed:
    """File a request; a role marked auto_approve is approved (and its grant created) at once.

    `client_token` names the asking interaction (Slack's trigger id): filing it again, as a redelivered
    task does, returns the request it already filed and re-sends its wake-ups (each of them idempotent)."""
    role = ctx.catalog.role(role_id)
    if role is None:
        allowed = ", ".join(r.id for r in ctx.roles_for(requester)) or "none"
        raise Refused(Reason.UNKNOWN_ROLE, f"There is no role {role_id!r}. Roles you can request: {allowed}.")
    identity = ctx.identity_of(requester)
    check = check_filing(role.rules(), duration=duration, reason=reason, has_principal=identity is not None,
                         pending=_pending_of(ctx, requester), max_pending=ctx.catalog.max_pending_per_person)
    if not check.ok or check.duration is None or identity is None:
        hints = {
            Reason.DURATION_TOO_LONG: f"{role.id} allows at most {format_duration(role.max_duration)}.",
            Reason.REASON_REQUIRED: f"{role.id} needs a reason, e.g. `{role.id} 1h fixing INC-123`.",
            Reason.TOO_MANY_PENDING: f"You already have {ctx.catalog.max_pending_per_person} requests waiting for "
                                     "approval; cancel one (`/access list`) or wait for a decision.",
        }
        raise Refused(check.reason, hints.get(check.reason))
    try:
        target_of(role, identity)
    except TargetError as exc:
        raise Refused(Reason.UNSUPPORTED_PRINCIPAL, str(exc)) from exc
    if client_token:
        earlier = _filed_with(ctx, client_token)
        if earlier is not None:
            _wake(ctx, earlier)
            return earlier
    now = ctx.now()
    try:
        filed = _file(ctx, role, identity, check.duration, requester=requester, reason=reason, ticket=ticket,
                      team_id=team_id, extends_grant_id=extends_grant_id, client_token=client_token, now=now)
    except IntegrityError:
        # Two deliveries of one interaction at once: the other one's row is the request.
        earlier = _filed_with(ctx, client_token) if client_token else None
        if earlier is None:
            raise
        filed = earlier
    _wake(ctx, filed)
    return filed


def _pending_of(ctx: Context, requester: str) -> int:
    """Requests of this person still waiting: each one pings approvers, so their number is capped."""
    with ctx.store() as session:
        return len(session.execute(select(AccessRequest.id).where(
            AccessRequest.requester == requester, AccessRequest.state == RequestState.PENDING.value)).all())


def _filed_with(ctx: Context, client_token: str) -> Filed | None:
    with ctx.store() as session:
        request = session.execute(
            select(AccessRequest).where(AccessRequest.client_token == client_token)).scalar_one_or_none()
        if request is None:
            return None
        grant = session.execute(select(Grant).where(Grant.request_id == request.id)).scalar_one_or_none() \
            if request.state == RequestState.APPROVED.value else None
        return Filed(request_id=request.id, state=RequestState(request.state),
                     grant_id=grant.id if grant else None, target_key=grant.target_key if grant else None)


def _file(
    ctx: Context, role: Role, identity: Identity, duration: timedelta, *, requester: str, reason: str | None,
    ticket: str | None, team_id: str | None, extends_grant_id: int | None, client_token: str | None,
    now: datetime,
) -> Filed:
    with ctx.store.begin() as session:
        if extends_grant_id is not None:
            old = session.execute(select(Grant).where(Grant.id == extends_grant_id)).scalar_one_or_none()
            if old is None or old.requester != requester or old.role_id != role.id:
                raise NotFound(f"no grant {extends_grant_id} of yours for {role.id}")
            if old.state not in {s.value for s in LIVE_GRANT_STATES}:
                raise Refused(Reason.NOT_REVOCABLE, "That access has already ended; file a new request.")
        request = AccessRequest(
            role_id=role.id, requester=requester, team_id=team_id, principal_arn=principal_of(identity),
            identity_key=identity.key,
            duration_seconds=int(duration.total_seconds()), reason=(reason or "").strip() or None,
            ticket=(ticket or "").strip() or None, state=RequestState.PENDING.value, created_at=now,
            extends_grant_id=extends_grant_id, break_glass=False, reminders_sent=0, version=0,
            next_reminder_at=now + ctx.catalog.reminder_after, client_token=client_token or None,
        )
        session.add(request)
        session.flush()
        repo.audit(session, at=now, actor=requester, action="request.filed", request_id=request.id,
                   role=role.id, duration=int(duration.total_seconds()), extends=extends_grant_id)
        grant = None
        if role.auto_approve:
            repo.move_request(session, request.id, RequestState.PENDING, RequestState.APPROVED,
                              decided_at=now, decided_by="auto")
            repo.audit(session, at=now, actor="auto", action="request.approved", request_id=request.id)
            grant = create_grant(session, ctx.catalog, request, identity, now, "auto")
        filed = Filed(
            request_id=request.id,
            state=RequestState.APPROVED if grant else RequestState.PENDING,
            grant_id=grant.id if grant else None,
            target_key=grant.target_key if grant else None,
        )
    return filed


def _wake(ctx: Context, filed: Filed) -> None:
    """Committed: now the side effects."""
    if filed.target_key:
        ctx.dispatch.sync(filed.target_key)
        ctx.dispatch.notify("request.decided", request_id=filed.request_id)
    elif filed.state is RequestState.PENDING:
        ctx.dispatch.notify("request.filed", request_id=filed.request_id)
