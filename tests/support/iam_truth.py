"""What IAM should hold, computed from the database with the sync code's own desired-state functions,
compared with what moto really holds; and the audit log's chain of document hashes per target.

`IamTruth.baseline()` syncs every target once (a worker must be running) and remembers each one's
foreign part and hash: the audit chain of a target starts at its first recorded sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from service.aws.errors import TargetGone
from service.core.cuts import place
from service.core.policy import canonical, document_hash, split
from service.core.targets import TargetError, TargetKind, TargetRef, sessions_target
from service.operations.granting import target_of
from service.operations.sweep import all_target_keys
from service.store import repo
from service.store.models import AuditEvent, OwnedMembership, Target
from service.sync.document import owned_statements
from service.sync.members import _hash as members_hash
from service.sync.sessions import page_hash, wanted_cuts
from service.sync.state import _snap, current_identity

CHAIN_ACTIONS = ("iam.write", "iam.changed")


@dataclass(frozen=True)
class Seen:
    """One target as IAM holds it: the part Keyturn does not own, the part it does, and the hash."""

    foreign: Any
    owned: Any
    hash: str | None


class IamTruth:
    def __init__(self, kt: Any) -> None:
        self.kt = kt
        self.base: dict[str, Seen] = {}
        self.base_event = 0  # the last audit event before the baseline was taken

    # ---- which targets -----------------------------------------------------------------------------
    def keys(self) -> list[str]:
        """Every target the catalogue can touch, for every principal, plus every one the database knows."""
        catalog = self.kt.catalog
        keys = set(all_target_keys(self.kt.ctx))
        for role in catalog.roles.values():
            keys.add(sessions_target(role.account, role.role_name).key)
            for identity in catalog.identities.values():
                try:
                    ref, _ = target_of(role, identity)
                except TargetError:
                    continue
                keys.add(ref.key)
        return sorted(keys)

    # ---- IAM as it is ------------------------------------------------------------------------------
    def read(self, key: str) -> Seen:
        ref, aws = TargetRef.parse(key), self.kt.runtime.aws  # the test's gateway goes straight to moto
        if ref.kind is TargetKind.GROUP:
            members = aws.group(ref).read()
            with self.kt.ctx.store() as session:
                ours = set(session.execute(select(OwnedMembership.member)
                                           .where(OwnedMembership.target_key == key)).scalars())
            return Seen(sorted(members - ours), sorted(members & ours), members_hash(members))
        if ref.kind is TargetKind.ROLE_SESSIONS:
            try:
                pages = aws.session_pages(ref).read_all()
            except TargetGone:
                pages = {}
            foreign = [split(d)[0] for _, d in sorted(pages.items())]
            owned = [s for _, d in sorted(pages.items()) for s in split(d)[1]]
            return Seen(foreign, sorted(canonical(s) for s in owned), page_hash(pages))
        try:
            doc = aws.document(ref).read()
        except TargetGone:
            doc = None
        foreign, owned = split(doc)
        return Seen(foreign, sorted(canonical(s) for s in owned), document_hash(doc))

    # ---- IAM as the database wants it --------------------------------------------------------------
    def desired(self, key: str, now: datetime) -> list[str]:
        ref = TargetRef.parse(key)
        if ref.kind is TargetKind.ROLE_SESSIONS:
            aws = self.kt.runtime.aws
            role, pages = aws.role_info(ref), aws.session_pages(ref)
            current = {p: split(d)[1] for p, d in pages.read_all().items()}
            placed = place(wanted_cuts(self.kt.ctx, ref, role, now), current, pages.capacity())
            return sorted(canonical(s) for statements in placed.pages.values() for s in statements)
        with self.kt.ctx.store() as session:
            snaps = [_snap(g, current_identity(self.kt.ctx, g)) for g in repo.grants_for_target(session, key)]
        leases, owned = owned_statements(ref.kind, snaps, now)
        if ref.kind is TargetKind.GROUP:
            return sorted(leases)
        return sorted(canonical(s) for s in owned)

    # ---- checks ------------------------------------------------------------------------------------
    def baseline(self) -> dict[str, Seen]:
        """Sync every target once through the worker, wait until settled, remember what IAM holds."""
        keys = self.keys()
        for key in keys:
            self.kt.ctx.dispatch.sync(key, force=True)
        self.kt.wait_until("every target's first sync", lambda: self._synced(keys))
        self.base = {key: self.read(key) for key in keys}
        with self.kt.ctx.store() as session:
            self.base_event = int(session.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc())
                                                  .limit(1)).scalar() or 0)
        return self.base

    def _synced(self, keys: list[str]) -> bool:
        with self.kt.ctx.store() as session:
            done = set(session.execute(select(Target.key).where(Target.last_synced_at.is_not(None),
                                                                Target.dirty_since.is_(None))).scalars())
        return set(keys) <= done

    def mismatches(self, now: datetime) -> list[str]:
        """Each target whose IAM is not the desired state (or whose foreign part changed), described."""
        out = []
        for key in self.keys():
            seen, want = self.read(key), self.desired(key, now)
            if seen.owned != want:
                out.append(f"{key}: IAM holds {seen.owned}, the database wants {want}")
            if key in self.base and seen.foreign != self.base[key].foreign:
                out.append(f"{key}: foreign part changed from {self.base[key].foreign} to {seen.foreign}")
        return out

    def assert_matches_db(self, now: datetime | None = None) -> None:
        problems = self.mismatches(now or self.kt.ctx.now())
        assert not problems, "IAM does not match the database:\n" + "\n".join(problems)

    def chain_breaks(self) -> list[str]:
        """Per target, from the baseline: each recorded step starts where the previous one ended, and the
        last one ends at what IAM holds now."""
        out = []
        for key, base in self.base.items():
            with self.kt.ctx.store() as session:
                events = list(session.execute(
                    select(AuditEvent).where(AuditEvent.target_key == key, AuditEvent.action.in_(CHAIN_ACTIONS),
                                             AuditEvent.id > self.base_event)
                    .order_by(AuditEvent.id)).scalars())
            at = base.hash
            for e in events:
                if e.hash_before != at:
                    out.append(f"{key}: event {e.id} {e.action} starts at {e.hash_before}, the chain was at {at}")
                at = e.hash_after
            now = self.read(key).hash
            if at != now:
                out.append(f"{key}: the audit chain ends at {at}, IAM's document hashes to {now}")
        return out

    def assert_chain(self) -> None:
        breaks = self.chain_breaks()
        assert not breaks, "the audit log does not account for every IAM change:\n" + "\n".join(breaks)

    def iam_writes(self) -> int:
        with self.kt.ctx.store() as session:
            return len(list(session.execute(select(AuditEvent.id).where(
                AuditEvent.action == "iam.write", AuditEvent.id > self.base_event)).scalars()))
