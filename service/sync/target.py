"""sync(target): make one IAM target match the grants the database wants, then verify it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from service.aws.gateway import AwsGateway
from service.aws.identities import IdentityUnresolved, resolve_pin
from service.core.identity import Pin
from service.core.states import LIVE_GRANT_STATES
from service.core.targets import TargetKind, TargetRef
from service.locks import Locks
from service.operations.context import Context
from service.sync.assignments import sync_assignments
from service.sync.document import sync_grants_document
from service.sync.members import sync_members
from service.sync.sessions import sync_sessions
from service.sync.state import GrantSnap, finish, prepare

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


def sync_target(
    ctx: Context, *, aws: AwsGateway, locks: Locks, target_key: str, verify_attempts: int = 6
) -> SyncReport:
    """Reconcile one target under its lock; safe to run any number of times, from any worker."""
    ref = TargetRef.parse(target_key)
    with locks.hold(target_key):
        started = ctx.now()
        snaps = prepare(ctx, target_key, started)
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
        outcome = finish(ctx, target_key, snaps, plan, started)
    report = SyncReport(target_key, plan.wrote, plan.hash_before, plan.hash_after, **outcome)
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
