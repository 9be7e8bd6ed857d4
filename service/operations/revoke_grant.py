"""Ending access early: "I'm done", an approver's or an admin's revoke, and forced clean-up."""

from __future__ import annotations

from service.core.rules import Reason, may_revoke
from service.core.states import EndReason, GrantState
from service.operations.context import Context, NotFound, Refused
from service.store import repo
from service.store.models import Grant


def revoke_grant(ctx: Context, *, grant_id: int, actor_id: str, note: str | None = None) -> str:
    """Mark the grant ending and wake its target's sync; it is revoked once removal is read back."""
    now = ctx.now()
    with ctx.store.begin() as session:
        # Hold the row: a sync activating the grant between this read and the compare-and-set below
        # would otherwise make a valid revoke fail as "already ended" (PostgreSQL; SQLite serialises).
        grant = session.get(Grant, grant_id, with_for_update=True)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        role = ctx.catalog.role(grant.role_id)
        actor = ctx.actor(actor_id)
        if role is None:
            verdict = Reason.OK if actor.is_admin else Reason.NOT_ALLOWED_TO_REVOKE
        else:
            verdict = may_revoke(role.rules(), GrantState(grant.state), grant.requester, actor)
        if verdict is not Reason.OK:
            raise Refused(verdict)
        if not repo.move_grant(session, grant_id, GrantState(grant.state), GrantState.ENDING,
                               end_reason=EndReason.REVOKED.value, end_requested_at=now, ended_by=actor_id):
            raise Refused(Reason.NOT_REVOCABLE)
        repo.mark_dirty(session, grant.target_key, now)
        repo.audit(session, at=now, actor=actor_id, action="grant.revoke_requested", grant_id=grant_id,
                   request_id=grant.request_id, target_key=grant.target_key, note=note)
        target_key = grant.target_key
    ctx.dispatch.sync(target_key, urgent=True)
    return target_key


def force_cleanup(ctx: Context, *, grant_id: int, actor_id: str) -> str:
    """An admin retries the removal of a grant stuck in revocation_failed."""
    now = ctx.now()
    if not ctx.actor(actor_id).is_admin:
        raise Refused(Reason.NOT_ALLOWED_TO_REVOKE, "Only an admin can force a clean-up.")
    with ctx.store.begin() as session:
        grant = session.get(Grant, grant_id)
        if grant is None:
            raise NotFound(f"no grant {grant_id}")
        repo.mark_dirty(session, grant.target_key, now)
        repo.audit(session, at=now, actor=actor_id, action="grant.cleanup_forced", grant_id=grant_id,
                   target_key=grant.target_key, state=grant.state)
        target_key = grant.target_key
    ctx.dispatch.sync(target_key, force=True, urgent=True)
    return target_key
