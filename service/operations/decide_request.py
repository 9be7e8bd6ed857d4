"""An approver's Approve or Deny on a pending request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.core.rules import Actor, Outcome, Reason, RequestView, Vote, decide_vote, identity_check
from service.core.states import RequestState
from service.operations.context import Context, NotFound, Refused
from service.operations.granting import create_grant
from service.store import repo
from service.store.models import AccessRequest, Approval, Grant


@dataclass(frozen=True)
class Decided:
    request_id: int
    outcome: Outcome
    approvals: int
    grant_id: int | None = None
    break_glass: bool = False


def decide_request(
    ctx: Context, *, request_id: int, approver: str, vote: Vote, note: str | None = None,
    team_id: str | None = None, client_token: str | None = None, security_key: str | None = None,
) -> Decided:
    """Record one vote; exactly one caller ever moves the request out of pending. `security_key`: the id of the
    approver's credential whose assertion the console has just verified (service/console/security_keys.py);
    a role that asks for one counts the vote only with it, and the audit records it."""
    now = ctx.now()
    actor = ctx.actor(approver)
    with ctx.store.begin() as session:
        outcome = _decide_locked(ctx, session, request_id, approver, actor, vote, note, team_id, now,
                                 client_token, security_key)
    # Committed: now the side effects.
    if isinstance(outcome, Refused):
        if client_token and outcome.reason is not Reason.WRONG_TEAM:
            redelivered = _cast_with(ctx, request_id, approver, client_token)
            if redelivered is not None:
                return redelivered
        if outcome.reason in AUDITED_REFUSALS:
            ctx.dispatch.notify("vote.refused", request_id=request_id, actor=approver, reason=outcome.reason.value)
        if outcome.reason is Reason.REQUEST_EXPIRED:
            ctx.dispatch.notify("request.decided", request_id=request_id)  # timed out: as the sweeper tells it
        raise outcome
    result, target_key = outcome
    if target_key:
        ctx.dispatch.sync(target_key)
    if result.outcome in (Outcome.APPROVED, Outcome.DENIED):
        ctx.dispatch.notify("request.decided", request_id=request_id, break_glass=result.break_glass)
    else:
        ctx.dispatch.notify("request.vote", request_id=request_id)
    return result


def _cast_with(ctx: Context, request_id: int, approver: str, client_token: str) -> Decided | None:
    """The same interaction delivered again after its vote counted (a worker died after the commit): no
    second vote, and its wake-ups are sent again, since the first delivery may have died before sending
    them (the sync is de-duplicated; the notifier may repeat a message, it never loses one)."""
    with ctx.store() as session:
        vote = session.execute(select(Approval).where(
            Approval.request_id == request_id, Approval.approver == approver,
            Approval.client_token == client_token)).scalar_one_or_none()
        if vote is None:
            return None
        request = session.get(AccessRequest, request_id)
        if request is None or request.state not in DECIDABLE:
            return None  # moved on since (timed out, cancelled): the refusal stands
        grant = session.execute(select(Grant).where(Grant.request_id == request_id)).scalar_one_or_none()
        approvals = len(session.execute(select(Approval.id).where(
            Approval.request_id == request_id, Approval.vote == Vote.APPROVE.value)).all())
        state, break_glass = RequestState(request.state), bool(request.break_glass)
        grant_id, target_key = (grant.id, grant.target_key) if grant else (None, None)
    if target_key:
        ctx.dispatch.sync(target_key)
    if state is RequestState.PENDING:
        ctx.dispatch.notify("request.vote", request_id=request_id)
        outcome = Outcome.RECORDED
    else:
        ctx.dispatch.notify("request.decided", request_id=request_id, break_glass=break_glass)
        outcome = Outcome.APPROVED if state is RequestState.APPROVED else Outcome.DENIED
    return Decided(request_id, outcome, approvals, grant_id, break_glass)


DECIDABLE = frozenset(s.value for s in (RequestState.PENDING, RequestState.APPROVED, RequestState.DENIED))
AUDITED_REFUSALS = frozenset({Reason.NOT_AN_APPROVER, Reason.SELF_APPROVAL, Reason.BREAK_GLASS_NEEDS_REASON,
                              Reason.REQUESTER_UNMAPPED, Reason.IDENTITY_CHANGED})


def _decide_locked(
    ctx: Context, session: Session, request_id: int, approver: str, actor: Actor, vote: Vote,
    note: str | None, team_id: str | None, now: datetime, client_token: str | None, security_key: str | None,
) -> Refused | tuple[Decided, str | None]:
    """The decision under the request's row lock; a refusal is returned (not raised) so its audit commits."""
    request = repo.lock_request(session, request_id)
    if request is None:
        raise NotFound(f"no request {request_id}")
    role = ctx.catalog.role(request.role_id)
    if role is None:
        raise Refused(Reason.UNKNOWN_ROLE, f"Role {request.role_id!r} is no longer in the catalogue.")
    # The Slack workspace is checked once, for every request, by the Slack middleware (service/slack/bolt_app.py).
    approvals = frozenset(session.execute(
        select(Approval.approver).where(Approval.request_id == request_id, Approval.vote == Vote.APPROVE.value)
    ).scalars())
    identity = ctx.identity_of(request.requester)
    view = RequestView(state=RequestState(request.state), requester=request.requester, approvals=approvals,
                       identity=identity_check(request.identity_key or request.principal_arn,
                                               identity.key if identity else None),
                       past_deadline=request.created_at + ctx.catalog.request_timeout <= now)
    decision = decide_vote(role.rules(), view, actor, vote, reason=note, key_confirmed=security_key is not None)
    if decision.reason is Reason.REQUEST_EXPIRED and repo.move_request(
            session, request_id, RequestState.PENDING, RequestState.TIMED_OUT, decided_at=now, decided_by="keyturn"):
        # Time it out here, as the sweeper would have: the approvers' message and the requester are told.
        repo.audit(session, at=now, actor="keyturn", action="request.timed_out", request_id=request_id)
    if decision.refused:
        # Refusals of identity are security events: keep them in the audit log.
        if decision.reason in AUDITED_REFUSALS:
            repo.audit(session, at=now, actor=approver, action="vote.refused", request_id=request_id,
                       reason=decision.reason.value, vote=vote.value)
        return Refused(decision.reason)
    session.add(Approval(request_id=request_id, approver=approver, vote=vote.value, note=note, created_at=now,
                         client_token=client_token))
    repo.audit(session, at=now, actor=approver, action=f"vote.{vote.value}", request_id=request_id,
               note=note, break_glass=decision.break_glass or None, security_key=security_key)
    grant_id = target_key = None
    if decision.outcome in (Outcome.APPROVED, Outcome.DENIED):
        dst = RequestState.APPROVED if decision.outcome is Outcome.APPROVED else RequestState.DENIED
        if not repo.move_request(session, request_id, RequestState.PENDING, dst, decided_at=now,
                                 decided_by=approver, decision_note=note, break_glass=decision.break_glass):
            return Refused(Reason.NOT_PENDING)
        repo.audit(session, at=now, actor=approver, action=f"request.{dst.value}", request_id=request_id,
                   break_glass=decision.break_glass or None, security_key=security_key)
        if dst is RequestState.APPROVED:
            session.refresh(request)
            assert identity is not None  # identity_check passed
            grant = create_grant(session, ctx.catalog, request, identity, now, approver)
            grant_id, target_key = grant.id, grant.target_key
    decided = Decided(request_id, decision.outcome, len(decision.approvals), grant_id, decision.break_glass)
    return decided, target_key
