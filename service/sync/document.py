"""sync for policy documents: trust policies and inline policies, foreign statements untouched."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.aws.documents import PolicyDocument
from service.aws.errors import LimitExceeded, SyncConflict, TargetGone
from service.core.identity import Pin, pin_for
from service.core.policy import (
    Document,
    Lease,
    Statement,
    assume_statement,
    canonical,
    combine_leases,
    document_hash,
    owned_sid,
    rebuild,
    same_statements,
    size_without_whitespace,
    split,
    trust_statement,
)
from service.core.states import LIVE_GRANT_STATES, GrantState
from service.core.targets import TargetKind
from service.sync.principals import refused_grants, write_accepted
from service.sync.state import GrantSnap, Plan

# IAM rewrites the principal of a deleted user or role into its unique id (AIDA…, AROA…).
UNIQUE_ID = re.compile(r"^A[A-Z0-9]{15,}$")


def _orphaned_sids(owned: list[Statement]) -> set[str]:
    out = set()
    for s in owned:
        principal = (s.get("Principal") or {}).get("AWS") if isinstance(s.get("Principal"), dict) else None
        if isinstance(principal, str) and UNIQUE_ID.match(principal):
            out.add(str(s.get("Sid")))
    return out


def sync_grants_document(
    doc: PolicyDocument, kind: TargetKind, snaps: list[GrantSnap], now: datetime, attempts: int,
    pins: Mapping[int, Pin | str] | None = None,
) -> Plan:
    """Rebuild the document as foreign statements + one owned statement per desired lease.

    `pins` (trust policies) holds each live grant's pin as resolved in IAM for this sync, or the reason
    it could not be: such a grant is not written, and fails (or, if it was active, ends) with that reason."""
    try:
        live = doc.read()
    except TargetGone as exc:
        return Plan(gone=True, gone_reason=str(exc))
    _, live_owned = split(live)
    present = {s.get("Sid") for s in live_owned}
    orphaned = _orphaned_sids(live_owned)
    wanted = live_snaps(snaps, now)
    failed: dict[int, str] = {}
    for s in list(wanted):
        pin = (pins or {}).get(s.id)
        if isinstance(pin, str):
            failed[s.id] = pin
            wanted.remove(s)
    for s in list(wanted):
        if owned_sid(s.lease_key) in orphaned:
            # The principal was deleted: its statement is cleaned and the grant cannot continue.
            failed[s.id] = f"principal {s.lease_key} no longer exists in IAM"
            wanted.remove(s)
    while True:
        leases, owned = owned_statements(kind, wanted, now, pins)
        new = rebuild(live, owned)
        problem = doc.limit_problem(new)
        if problem is None:
            break
        # Refuse the newest access that is not in IAM yet; never write a document AWS would reject.
        candidates = [s for s in wanted if s.state is GrantState.PROVISIONING and owned_sid(s.lease_key) not in present]
        if not candidates:
            shrinking = live is not None and size_without_whitespace(new) < size_without_whitespace(live)
            if (shrinking and new.get("Statement")) or canonical(new) == canonical(live):
                break  # removal must never be blocked by a quota, and an unchanged document is no write
            raise LimitExceeded(problem)
        victim = max(candidates, key=lambda s: s.id)
        failed[victim.id] = problem
        wanted.remove(victim)
    refused: dict[str, str] = {}
    plan = _write_and_verify(doc, live, new, owned, attempts, refused)
    sid_to_key = {owned_sid(k): k for k in leases}
    failed.update(refused_grants(refused, sid_to_key, wanted))
    plan.desired_keys = {k for sid, k in sid_to_key.items() if sid not in refused}
    plan.failed = failed
    plan.active_keys_with_sid = {sid: k for sid, k in sid_to_key.items() if sid not in refused}
    return plan


def live_snaps(snaps: list[GrantSnap], now: datetime) -> list[GrantSnap]:
    """The grants whose access belongs in IAM now: live, unexpired, and still the catalogue's person."""
    return [s for s in snaps if s.state in LIVE_GRANT_STATES and s.expires_at > now and s.identity is not None]


def _pin(s: GrantSnap, pins: Mapping[int, Pin | str] | None) -> Pin | None:
    pin = (pins or {}).get(s.id)
    if isinstance(pin, Pin):
        return pin
    if s.identity is not None and s.identity.is_user:
        return pin_for(s.identity)
    return None


def owned_statements(
    kind: TargetKind, snaps: list[GrantSnap], now: datetime, pins: Mapping[int, Pin | str] | None = None
) -> tuple[dict[str, Lease], list[Statement]]:
    """The owned statements the database wants in a grants document: one per live lease key, each
    admitting one person (trust policies: the principal and its session pinned; inline policies: the
    session name, and on a group the member)."""
    if kind is TargetKind.TRUST_POLICY:
        wanted = [(s, _pin(s, pins)) for s in live_snaps(snaps, now)]
        leases = combine_leases((Lease(s.lease_key, s.expires_at, s.require_mfa, s.session_name, pin)
                                 for s, pin in wanted if pin is not None), now)
        return leases, [trust_statement(lease) for lease in leases.values()]
    leases = combine_leases((Lease(s.lease_key, s.expires_at, s.require_mfa, s.session_name)
                             for s in live_snaps(snaps, now)), now)
    return leases, [assume_statement(lease) for lease in leases.values()]


def sync_document_to(doc: PolicyDocument, owned: list[Statement], attempts: int) -> Plan:
    """Make the owned part of `doc` exactly `owned` (for documents not tied to grant leases)."""
    live = doc.read()
    new = rebuild(live, owned)
    problem = doc.limit_problem(new)
    if problem is not None:
        raise LimitExceeded(problem)
    return _write_and_verify(doc, live, new, owned, attempts)


def _write_and_verify(
    doc: PolicyDocument, live: Document | None, new: Document, owned: list[Statement], attempts: int,
    refused: dict[str, str] | None = None,
) -> Plan:
    """Write and read back. Given `refused`, owned statements naming a principal IAM refuses are dropped
    (their Sid -> reason recorded there) and the rest is written (service/sync/principals.py)."""
    # A document with no statement is deleted (inline policies): when none exists, there is nothing to write.
    wrote = canonical(new if new.get("Statement") else None) != canonical(live)
    if wrote and refused is None:
        doc.write(new)
    elif wrote and refused is not None:
        new, owned, dropped = write_accepted(doc, live, new, owned)
        refused.update(dropped)
        wrote = canonical(new) != canonical(live)
    verify(doc, owned, attempts)
    before = {s.get("Sid") for s in split(live)[1]}
    after = {s["Sid"] for s in owned}
    return Plan(
        wrote=wrote, hash_before=document_hash(live), hash_after=document_hash(new if new.get("Statement") else None),
        added=sorted(after - before), removed=sorted(str(s) for s in before - after if s),
        verified={"statements": owned},
    )


def verify(doc: PolicyDocument, owned: list[dict[str, Any]], attempts: int) -> None:
    """Read back until IAM shows exactly our owned statements; IAM reads can lag a write."""
    for attempt in range(attempts):
        try:
            back = doc.read()
        except TargetGone:
            back = None
        if same_statements(split(back)[1], owned):
            return
        time.sleep(min(0.1 * 2**attempt, 2.0))
    raise SyncConflict("the document read back does not match what was written")
