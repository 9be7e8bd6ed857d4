"""The sweeper: end grants past expiry, time out stale requests, re-send lost wake-ups."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update

from service.catalog import Strategy
from service.core.states import LIVE_GRANT_STATES, GrantState, RequestState
from service.core.targets import TargetKind, TargetRef
from service.operations.context import Context
from service.operations.granting import still_granted
from service.store import repo
from service.store.models import AccessRequest, Grant, Target


@dataclass
class SweepReport:
    expiring: list[int] = field(default_factory=list)
    timed_out: list[int] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    reminded: list[int] = field(default_factory=list)
    armed: list[str] = field(default_factory=list)  # "target@expiry" clean-ups timed for the coming expiries


# A timed clean-up runs this long after the expiry second: Celery's timer fires at or just after its ETA,
# and the expiry must have passed when the sync reads the clock (bench/RESULTS.md, clean-up lag).
CLEANUP_DELAY = timedelta(milliseconds=20)


def _tenth_up(moment: datetime) -> datetime:
    tenths = -(-moment.microsecond // 100_000)
    return moment.replace(microsecond=0) + timedelta(microseconds=tenths * 100_000)


def sweep(ctx: Context, *, resend_after: timedelta = timedelta(seconds=10), limit: int = 5000,
          lookahead: timedelta = timedelta(0)) -> SweepReport:
    """Idempotent and safe to run from two beats at once: every move is a compare-and-set.

    With a `lookahead`, the syncs of grants expiring within it are also timed for their expiry second
    (short countdowns, never long ETAs: the sweep stays the backstop), so the statement and membership go
    within a few hundred milliseconds of the expiry instead of at the next sweep."""
    now = ctx.now()
    report = SweepReport()
    to_sync: set[str] = set()
    with ctx.store.begin() as session:
        if lookahead > timedelta(0):
            soon = session.execute(
                select(Grant.target_key, Grant.expires_at).where(
                    Grant.state.in_([s.value for s in LIVE_GRANT_STATES]), Grant.expires_at > now,
                    Grant.expires_at <= now + lookahead).order_by(Grant.expires_at).limit(limit)
            ).all()
            # One timed sync per target and tenth of a second: grants expiring together are ended together.
            for target_key, expires_at in sorted({(k, _tenth_up(e)) for k, e in soon}):
                report.armed.append(f"{target_key}@{expires_at.isoformat()}")
        due = session.execute(
            select(Grant).where(Grant.state.in_([s.value for s in LIVE_GRANT_STATES]), Grant.expires_at <= now)
            .order_by(Grant.expires_at).limit(limit)
        ).scalars().all()
        for g in due:
            if repo.expire_grant(session, g, now):
                report.expiring.append(g.id)
                repo.mark_dirty(session, g.target_key, now)
                to_sync.add(g.target_key)
        stale_before = now - ctx.catalog.request_timeout
        stale = session.execute(
            select(AccessRequest.id).where(AccessRequest.state == RequestState.PENDING.value,
                                           AccessRequest.created_at <= stale_before).limit(limit)
        ).scalars().all()
        for request_id in stale:
            if repo.move_request(session, request_id, RequestState.PENDING, RequestState.TIMED_OUT,
                                 decided_at=now, decided_by="keyturn"):
                report.timed_out.append(request_id)
                repo.audit(session, at=now, actor="keyturn", action="request.timed_out", request_id=request_id)
        due_reminders = session.execute(
            select(AccessRequest).where(AccessRequest.state == RequestState.PENDING.value,
                                        AccessRequest.next_reminder_at <= now).limit(limit)
        ).scalars().all()
        for req in due_reminders:
            # Backoff: 1x, 2x, 4x … the first interval; compare-and-set on the old value so two beats
            # never remind twice.
            step = ctx.catalog.reminder_after * (2 ** (req.reminders_sent + 1))
            moved = session.execute(
                update(AccessRequest).where(AccessRequest.id == req.id,
                                            AccessRequest.reminders_sent == req.reminders_sent,
                                            AccessRequest.state == RequestState.PENDING.value)
                .values(reminders_sent=req.reminders_sent + 1, next_reminder_at=now + step)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if moved:
                report.reminded.append(req.id)
        lost = set(session.execute(
            # A failing target is already in a retry chain with backoff; re-sending would multiply it.
            select(Target.key).where(Target.dirty_since.is_not(None), Target.dirty_since <= now - resend_after,
                                     Target.failures == 0)
        ).scalars().all())
        report.resent = sorted(lost - to_sync)
        to_sync.update(lost)
        # Ending grants' targets first, then the other lost ones (session cuts, grants being given): after an
        # outage the latter can be many, and in key order they came first (bench/RESULTS.md, revocation).
        # A lost session cut waits behind the removals, as it does when nothing is lost: the cut follows them.
        ending = set(session.execute(
            select(Grant.target_key).where(Grant.state == GrantState.ENDING.value).distinct()
        ).scalars().all()) & to_sync
    for key in sorted(ending) + sorted(to_sync - ending):
        # Every sync the sweeper sends is urgent: it ends an expired grant, or re-sends a lost wake-up that
        # may be a revocation's (few). A lost one is sent past the de-duplication (its flag may be stale).
        ctx.dispatch.sync(key, force=key in lost, urgent=True)
    for armed in report.armed:
        key, _, at = armed.rpartition("@")
        ctx.dispatch.sync_at(key, datetime.fromisoformat(at) + CLEANUP_DELAY)
    for request_id in report.timed_out:
        ctx.dispatch.notify("request.decided", request_id=request_id)
    for request_id in report.reminded:
        ctx.dispatch.notify("request.reminder", request_id=request_id)
    return report


def all_target_keys(ctx: Context) -> list[str]:
    """Every target Keyturn has touched, plus every catalogued trust policy (to clean strays)."""
    keys: set[str] = set()
    for role in ctx.catalog.roles.values():
        if role.strategy is Strategy.TRUST_POLICY:
            keys.add(TargetRef(TargetKind.TRUST_POLICY, role.account, role.role_name).key)
    with ctx.store.begin() as session:
        keys.update(session.execute(select(Target.key)).scalars())
    return sorted(keys)


def end_unmapped(ctx: Context) -> list[int]:
    """End the live grants of people the catalogue no longer maps to the identity the grant was made for
    (removed, or remapped to someone else): after a catalogue change, at the next reconcile or worker start."""
    now = ctx.now()
    ended: list[int] = []
    keys: set[str] = set()
    with ctx.store.begin() as session:
        for g in repo.grants_in(session, LIVE_GRANT_STATES):
            why = still_granted(ctx.catalog, g, ctx.identity_still(g.requester, g.identity_key or g.principal_arn))
            if why is not None and repo.end_unmapped_grant(session, g, now, why):
                ended.append(g.id)
                keys.add(g.target_key)
                repo.mark_dirty(session, g.target_key, now)
    for key in sorted(keys):
        ctx.dispatch.sync(key, urgent=True)
    return ended


def reconcile_all(ctx: Context) -> list[str]:
    """Wake a sync for every target: repairs drift and finishes work a crash interrupted."""
    end_unmapped(ctx)
    keys = all_target_keys(ctx)
    for key in keys:
        ctx.dispatch.sync(key)
    return keys
