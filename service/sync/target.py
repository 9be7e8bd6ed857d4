"""sync(target): make one IAM target match the grants the database wants, then verify it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from service.aws.gateway import AwsGateway
from service.aws.identities import IdentityUnresolved, resolve_pin
from service.core.identity import Pin
from service.core.states import ENDING_GRANT_STATES, LIVE_GRANT_STATES, GrantState
from service.core.targets import TargetKind, TargetRef
from service.locks import Locks
from service.operations.context import Context
from service.sync.assignments import sync_assignments
from service.sync.document import sync_grants_document
from service.sync.members import sync_members
from service.sync.sessions import sync_sessions
from service.sync.state import GrantSnap, finish, prepare, refuse_grants

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyncReport:
    target_key: str
    wrote: bool
    hash_before: str | None
    hash_after: str | None
    activated: list[int] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    gone: bool = False
    follow_up: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)  # role_sessions: people whose cut found no room


def resolve_pins(aws: AwsGateway, snaps: list[GrantSnap]) -> dict[int, Pin | str]:
    """Each live grant's pin, with its person's sign-in roles read from IAM now; the reason where not."""
    out: dict[int, Pin | str] = {}
    seen: dict[str, Pin | str] = {}
    for s in snaps:
        if s.identity is None or s.state not in LIVE_GRANT_STATES:
            continue
        key = s.identity.key
        if key not in seen:
            try:
                seen[key] = resolve_pin(aws.clients, s.identity)
            except IdentityUnresolved as exc:
                seen[key] = str(exc)
        out[s.id] = seen[key]
    return out


# Targets whose access opens sessions of a catalogue role, which a session cut must be able to end.
CUT_KINDS = frozenset({TargetKind.TRUST_POLICY, TargetKind.GROUP, TargetKind.INLINE_USER, TargetKind.INLINE_GROUP})


def _sync_cuts(ctx: Context, aws: AwsGateway, locks: Locks, keys: set[str | None], attempts: int) -> list[str]:
    """Sync these role_sessions targets now, here (each under its own lock, taken inside the grant
    target's: the cut's sync never takes another lock, so no two workers wait on each other); the people
    whose cut found no room."""
    unplaced: list[str] = []
    for key in sorted(k for k in keys if k):
        unplaced += sync_target(ctx, aws=aws, locks=locks, target_key=key, verify_attempts=attempts).unplaced
    return unplaced


def _arm(ctx: Context, aws: AwsGateway, locks: Locks, target_key: str, snaps: list[GrantSnap],
         attempts: int) -> list[int]:
    """Write the armed cuts of the grants about to be given; refuse (fail) those whose cut has no room."""
    new = [s for s in snaps if s.state is GrantState.PROVISIONING and s.identity is not None]
    if not new:
        return []
    unplaced = set(_sync_cuts(ctx, aws, locks, {s.cut_key for s in new}, attempts))
    doomed = {s.id: "the role has no room left for this person's session cut (README: session cuts)"
              for s in new if s.identity is not None and s.identity.key in unplaced}
    return refuse_grants(ctx, target_key, doomed) if doomed else []


def sync_target(
    ctx: Context, *, aws: AwsGateway, locks: Locks, target_key: str, verify_attempts: int = 6
) -> SyncReport:
    """Reconcile one target under its lock; safe to run any number of times, from any worker."""
    ref = TargetRef.parse(target_key)
    refused: list[int] = []
    cut_error: Exception | None = None
    with locks.hold(target_key):
        started = ctx.now()
        snaps = prepare(ctx, target_key, started)
        if ref.kind in CUT_KINDS:
            # Arm first: a person's session cut is in IAM before any access of theirs is.
            refused = _arm(ctx, aws, locks, target_key, snaps, verify_attempts)
            snaps = [s for s in snaps if s.id not in refused]
        if ref.kind is TargetKind.GROUP:
            plan = sync_members(ctx, aws.group(ref), target_key, snaps, started, verify_attempts)
        elif ref.kind is TargetKind.IDENTITY_CENTER:
            center = ctx.catalog.identity_center
            if center is None:
                raise ValueError(f"{target_key}: the catalogue has no settings.identity_center")
            plan = sync_assignments(ctx, aws.identity_center(ref, center), target_key, snaps, started,
                                    verify_attempts)
        elif ref.kind is TargetKind.ROLE_SESSIONS:
            plan = sync_sessions(ctx, aws, ref, started, verify_attempts)
        else:
            pins = resolve_pins(aws, snaps) if ref.kind is TargetKind.TRUST_POLICY else None
            plan = sync_grants_document(aws.document(ref), ref.kind, snaps, started, verify_attempts, pins)
        if ref.kind in CUT_KINDS:
            # The access is gone: now move the ending people's cuts to their end (an early end, "I'm done",
            # moves it forward; at an expiry it is already there). Only then are their grants ended.
            try:
                _sync_cuts(ctx, aws, locks, {s.cut_key for s in snaps if s.state in ENDING_GRANT_STATES},
                           verify_attempts)
            except Exception as exc:
                cut_error = exc
        outcome = finish(ctx, target_key, snaps, plan, started, cut_missing=cut_error is not None)
    if cut_error is not None:
        log.warning("session cut not verified; ending grants stay ending", extra={"target": target_key})
        raise cut_error
    outcome["failed"] = {**outcome["failed"], **{g: "no room for the session cut" for g in refused}}
    report = SyncReport(target_key, plan.wrote, plan.hash_before, plan.hash_after, **outcome,
                        unplaced=plan.unplaced)
    # Committed: now the side effects.
    for key in report.follow_up:
        # After an end the follow-up is the session cut: still part of ending access.
        ctx.dispatch.sync(key, urgent=bool(report.ended))
    for grant_id in report.activated:
        ctx.dispatch.notify("grant.active", grant_id=grant_id)
    for grant_id in report.ended:
        ctx.dispatch.notify("grant.ended", grant_id=grant_id)
    for grant_id in report.failed:
        ctx.dispatch.notify("grant.failed", grant_id=grant_id)
    return report
