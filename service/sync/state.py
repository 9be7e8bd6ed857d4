"""The database side of sync: the snapshot before IAM is touched, and the transitions after."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.core.identity import Identity
from service.core.states import (
    ENDING_GRANT_STATES,
    LIVE_GRANT_STATES,
    EndReason,
    GrantState,
    terminal_state_for,
)
from service.core.targets import TargetKind, TargetRef
from service.operations.context import Context
from service.operations.granting import cut_key_of, still_granted
from service.store import repo
from service.store.models import Grant


@dataclass(frozen=True)
class GrantSnap:
    id: int
    request_id: int
    role_id: str
    state: GrantState
    lease_key: str
    expires_at: datetime
    require_mfa: bool
    session_name: str | None
    end_reason: EndReason | None
    # The catalogue's identity for the requester now, when it is still the person the grant was made for;
    # None for a grant that is not live. A live grant whose person is no longer mapped never gets here: it is
    # moved to ending first (prepare), so nothing is written for a person the catalogue no longer names.
    identity: Identity | None = None
    cut_key: str | None = None  # the role_sessions target that cuts this grant's sessions


@dataclass
class Plan:
    """What one sync found and did in IAM."""

    wrote: bool = False
    hash_before: str | None = None
    hash_after: str | None = None
    desired_keys: set[str] = field(default_factory=set)
    failed: dict[int, str] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    active_keys_with_sid: dict[str, str] = field(default_factory=dict)
    gone: bool = False
    gone_reason: str | None = None
    unplaced: list[str] = field(default_factory=list)  # role_sessions: people whose cut found no room
    # What Keyturn owns in the target as verified by the read-back (Target.last_owned).
    verified: dict[str, Any] | None = None


def _snap(g: Grant, identity: Identity | None = None) -> GrantSnap:
    return GrantSnap(
        id=g.id, request_id=g.request_id, role_id=g.role_id, state=GrantState(g.state), lease_key=g.lease_key,
        expires_at=g.expires_at, require_mfa=g.require_mfa, session_name=g.session_name,
        end_reason=EndReason(g.end_reason) if g.end_reason else None, identity=identity, cut_key=g.cut_key,
    )


def current_identity(ctx: Context, g: Grant) -> Identity | None:
    """The catalogue's identity for the grant's requester, if it is still the person the grant is for."""
    return ctx.identity_still(g.requester, g.identity_key or g.principal_arn)


def prepare(ctx: Context, target_key: str, now: datetime) -> list[GrantSnap]:
    """Move grants past their expiry, and grants of people the catalogue no longer maps to the same
    identity, to ending (sync does not wait for the sweeper); then snapshot."""
    with ctx.store.begin() as session:
        for g in repo.grants_for_target(session, target_key):
            if g.state not in {s.value for s in LIVE_GRANT_STATES}:
                continue
            if g.expires_at <= now:
                repo.expire_grant(session, g, now)
            elif (why := still_granted(ctx.catalog, g, current_identity(ctx, g))) is not None:
                repo.end_unmapped_grant(session, g, now, why)
        session.flush()
        session.expire_all()
        return [dataclasses.replace(_snap(g, current_identity(ctx, g)), cut_key=_cut_key(ctx, g))
                for g in repo.grants_for_target(session, target_key)]


def _cut_key(ctx: Context, g: Grant) -> str | None:
    """The grant's own record, or (rows from before it was kept) the catalogue role's."""
    if g.cut_key:
        return g.cut_key
    role = ctx.catalog.role(g.role_id)
    return cut_key_of(role) if role is not None else None


def finish(
    ctx: Context, target_key: str, snaps: list[GrantSnap], plan: Plan, started: datetime, *,
    cut_missing: bool = False,
) -> dict[str, Any]:
    """Record what the verified IAM state means for each grant; compare-and-set, so races lose cleanly.

    `cut_missing`: the session cut of the grants ending here could not be verified, so none of them is
    reported ended (they stay ending, retried, and end as revocation_failed if it keeps failing)."""
    now = ctx.now()
    activated: list[int] = []
    ended: list[int] = []
    failed: dict[int, str] = {}
    with ctx.store.begin() as session:
        for s in snaps:
            if s.state is GrantState.PROVISIONING:
                reason = plan.gone_reason if plan.gone else plan.failed.get(s.id)
                if reason is not None:
                    if repo.move_grant(session, s.id, s.state, GrantState.FAILED, failure_reason=reason,
                                       ended_at=now):
                        failed[s.id] = reason
                        repo.audit(session, at=now, actor="keyturn", action="grant.failed", grant_id=s.id,
                                   request_id=s.request_id, target_key=target_key, reason=reason)
                elif s.lease_key in plan.desired_keys and repo.move_grant(
                    session, s.id, s.state, GrantState.ACTIVE, activated_at=now
                ):
                    activated.append(s.id)
                    repo.audit(session, at=now, actor="keyturn", action="grant.active", grant_id=s.id,
                               request_id=s.request_id, target_key=target_key)
            elif s.state is GrantState.ACTIVE and s.id in plan.failed:
                # Its principal vanished from IAM (a deleted user): the statement was cleaned, the grant ends.
                reason = plan.failed[s.id]
                if repo.move_grant(session, s.id, s.state, GrantState.ENDING, end_reason=EndReason.REVOKED.value,
                                   end_requested_at=now, failure_reason=reason, ended_by="keyturn") and \
                        repo.move_grant(session, s.id, GrantState.ENDING, GrantState.REVOKED, ended_at=now):
                    ended.append(s.id)
                    repo.audit(session, at=now, actor="keyturn", action="grant.revoked", grant_id=s.id,
                               request_id=s.request_id, target_key=target_key, reason=reason)
            elif s.state in ENDING_GRANT_STATES and not cut_missing:
                # Verified: this grant's own access is gone (another live lease may still cover the key).
                final = terminal_state_for(s.end_reason or EndReason.REVOKED)
                if repo.move_grant(session, s.id, s.state, final, ended_at=now):
                    ended.append(s.id)
                    repo.audit(session, at=now, actor="keyturn", action=f"grant.{final.value}", grant_id=s.id,
                               request_id=s.request_id, target_key=target_key)
        follow_up: set[str] = set()
        for s in snaps:
            # (An Identity Center assignment has no target role of Keyturn's to carry a cut: no cut_key.)
            if (s.id in ended or s.id in activated) and s.session_name and s.cut_key:
                # The cut was synced with this change (sync_target); a follow-up makes sure it stays so.
                repo.mark_dirty(session, s.cut_key, now)
                follow_up.add(s.cut_key)
        known = {s.lease_key for s in snaps}
        target = repo.ensure_target(session, target_key)
        # A session cut follows a grant that ended on another target: expected, not drift, unless IAM
        # changed since this target's last sync.
        session_cut = TargetRef.parse(target_key).kind is TargetKind.ROLE_SESSIONS and \
            plan.hash_before == target.last_hash
        if plan.wrote and not (activated or ended or failed or session_cut):
            # Nothing in the database changed, yet IAM had to: someone edited it by hand, or a crash did.
            repo.audit(session, at=now, actor="keyturn", action="drift.repaired", target_key=target_key,
                       hash_before=plan.hash_before, hash_after=plan.hash_after, added=plan.added,
                       removed=plan.removed)
        if target.last_synced_at is not None and not plan.gone and plan.hash_before != target.last_hash:
            # IAM is not what the last recorded sync left: a write whose outcome was never recorded (a worker
            # killed after it, a lost response) or an edit outside Keyturn. Record the step, so the chain of
            # hashes in the audit log has no hole.
            repo.audit(session, at=now, actor="keyturn", action="iam.changed", target_key=target_key,
                       hash_before=target.last_hash, hash_after=plan.hash_before)
        if plan.wrote:
            repaired = [sid for sid in plan.added if plan.active_keys_with_sid.get(sid) in known]
            repo.audit(session, at=now, actor="keyturn", action="iam.write", target_key=target_key,
                       hash_before=plan.hash_before, hash_after=plan.hash_after, added=plan.added,
                       removed=plan.removed, grants_activated=activated or None, grants_ended=ended or None,
                       restored=[s for s in repaired if _was_active(snaps, plan, s)] or None)
        target.last_synced_at = now
        target.last_hash = plan.hash_after
        target.last_owned = None if plan.gone else plan.verified
        target.failures = 0
        target.last_error = plan.gone_reason
        if target.dirty_since is not None and target.dirty_since <= started:
            target.dirty_since = None
    return {"activated": activated, "ended": ended, "failed": failed, "gone": plan.gone,
            "follow_up": sorted(follow_up)}


def _was_active(snaps: list[GrantSnap], plan: Plan, sid: str) -> bool:
    key = plan.active_keys_with_sid.get(sid)
    return any(s.lease_key == key and s.state is GrantState.ACTIVE for s in snaps)


def refuse_grants(ctx: Context, target_key: str, refused: dict[int, str]) -> list[int]:
    """Fail grants before any access is written for them (their session cut has no room): audited."""
    now = ctx.now()
    failed = []
    with ctx.store.begin() as session:
        for grant_id, reason in sorted(refused.items()):
            if repo.move_grant(session, grant_id, GrantState.PROVISIONING, GrantState.FAILED,
                               failure_reason=reason, ended_at=now):
                failed.append(grant_id)
                repo.audit(session, at=now, actor="keyturn", action="grant.failed", grant_id=grant_id,
                           target_key=target_key, reason=reason)
    return failed


def record_sync_failure(ctx: Context, *, target_key: str, error: str, final: bool) -> dict[str, list[int]]:
    """A sync attempt failed. On the last retry, grants waiting on this target fail loudly."""
    now = ctx.now()
    failed: list[int] = []
    stuck: list[int] = []
    with ctx.store.begin() as session:
        target = repo.ensure_target(session, target_key, dirty_since=now)
        target.failures = (target.failures or 0) + 1
        target.last_error = error[:2000]
        repo.audit(session, at=now, actor="keyturn", action="sync.error", target_key=target_key,
                   error=error[:500], final=final or None)
        if final:
            # Stop the sweeper's fast re-sends; the periodic reconcile and operators take it from here.
            target.dirty_since = None
            for g in repo.grants_for_target(session, target_key):
                state = GrantState(g.state)
                if state is GrantState.PROVISIONING and repo.move_grant(
                    session, g.id, state, GrantState.FAILED, failure_reason=error[:2000], ended_at=now
                ):
                    failed.append(g.id)
                    repo.audit(session, at=now, actor="keyturn", action="grant.failed", grant_id=g.id,
                               target_key=target_key, reason=error[:500])
                elif state is GrantState.ENDING and repo.move_grant(
                    session, g.id, state, GrantState.REVOCATION_FAILED, failure_reason=error[:2000]
                ):
                    stuck.append(g.id)
                    repo.audit(session, at=now, actor="keyturn", action="grant.revocation_failed",
                               grant_id=g.id, target_key=target_key, reason=error[:500])
    for grant_id in failed:
        ctx.dispatch.notify("grant.failed", grant_id=grant_id)
    for grant_id in stuck:
        ctx.dispatch.notify("grant.revocation_failed", grant_id=grant_id)
    return {"failed": failed, "revocation_failed": stuck}
