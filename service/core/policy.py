"""Policy documents: owned statements, merging with foreign ones, hashing and AWS size limits."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.core.identity import Pin
from service.core.targets import split_group_lease_key

OWNED_SID_PREFIX = "Keyturn"
POLICY_VERSION = "2012-10-17"

Statement = dict[str, Any]
Document = dict[str, Any]


@dataclass(frozen=True)
class Lease:
    """One grant's wish to have `key` (a principal ARN or a role ARN) present until `expires_at`."""

    key: str
    expires_at: datetime
    require_mfa: bool = False
    session_name: str | None = None
    pin: Pin | None = None  # who exactly (trust policies); None keeps the principal = key form


def iso_z(moment: datetime) -> str:
    """UTC timestamp as IAM conditions want it: 2026-11-23T10:00:00Z."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: Keyturn only handles timezone-aware UTC times")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def owned_sid(key: str) -> str:
    """A stable, alphanumeric Sid for the statement Keyturn owns for `key`."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24].upper()
    return f"{OWNED_SID_PREFIX}{digest}"


# Keyturn's Sids, exactly: "Keyturn" + 24 upper-case hex digits (a grant statement) or "KeyturnRevoke" + 20
# (a session cut). Anything else, even a Sid that merely starts with "Keyturn", is foreign and never touched.
OWNED_SID = re.compile(r"Keyturn(?:[0-9A-F]{24}|Revoke[0-9A-F]{20})")


def is_owned(statement: Mapping[str, Any]) -> bool:
    sid = statement.get("Sid")
    return isinstance(sid, str) and OWNED_SID.fullmatch(sid) is not None


def _one_or_list(values: tuple[str, ...]) -> str | list[str]:
    return values[0] if len(values) == 1 else list(values)


def _conditions(lease: Lease, extra: dict[str, str] | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"DateLessThan": {"aws:CurrentTime": iso_z(lease.expires_at)}}
    if lease.require_mfa:
        cond["Bool"] = {"aws:MultiFactorAuthPresent": "true"}
    equals: dict[str, Any] = {}
    session_name = lease.pin.session_name if lease.pin else lease.session_name
    if session_name:
        equals["sts:RoleSessionName"] = session_name
    if lease.pin and lease.pin.user_ids:
        # A role-based person (SSO, federation): the role admits everyone who signs in with it; aws:userid is
        # "<role unique id>:<session name>", which only this person's session of that role carries.
        equals["aws:userid"] = _one_or_list(lease.pin.user_ids)
    equals.update(extra or {})
    if equals:
        cond["StringEquals"] = equals
    return cond


def trust_statement(lease: Lease) -> Statement:
    """Let one person assume the role until the lease expires: the principal pinned to their session."""
    principals = lease.pin.principals if lease.pin else (lease.key,)
    return {
        "Sid": owned_sid(lease.key),
        "Effect": "Allow",
        "Principal": {"AWS": _one_or_list(principals)},
        "Action": "sts:AssumeRole",
        "Condition": _conditions(lease),
    }


def assume_statement(lease: Lease) -> Statement:
    """Allow the identity holding this policy to assume the role of `lease.key` until the lease expires.

    On a group's policy the key names the member too, and the statement is pinned to that member
    (aws:username): a group policy never admits the whole group."""
    role_arn, member = split_group_lease_key(lease.key)
    return {
        "Sid": owned_sid(lease.key),
        "Effect": "Allow",
        "Action": "sts:AssumeRole",
        "Resource": role_arn,
        "Condition": _conditions(lease, {"aws:username": member} if member else None),
    }


def combine_leases(leases: Iterable[Lease], now: datetime) -> dict[str, Lease]:
    """One lease per key: overlapping grants never revoke each other, the latest expiry wins.

    Leases already expired at `now` are dropped: such access is never written.
    """
    out: dict[str, Lease] = {}
    for lease in leases:
        if lease.expires_at <= now:
            continue
        have = out.get(lease.key)
        if have is None:
            out[lease.key] = lease
        else:
            # MFA is required if any live lease requires it; the later expiry is kept.
            out[lease.key] = Lease(
                key=lease.key,
                expires_at=max(have.expires_at, lease.expires_at),
                require_mfa=have.require_mfa or lease.require_mfa,
                session_name=have.session_name or lease.session_name,
                pin=have.pin or lease.pin,
            )
    return out


def split(document: Mapping[str, Any] | None) -> tuple[list[Statement], list[Statement]]:
    """(foreign statements in their order, owned statements)."""
    if not document:
        return [], []
    raw = document.get("Statement", [])
    statements = [raw] if isinstance(raw, dict) else list(raw)
    foreign = [s for s in statements if not is_owned(s)]
    owned = [s for s in statements if is_owned(s)]
    return foreign, owned


def rebuild(document: Mapping[str, Any] | None, owned: Iterable[Statement]) -> Document:
    """Foreign statements untouched and in order, then the owned ones sorted by Sid."""
    foreign, _ = split(document)
    version = (document or {}).get("Version", POLICY_VERSION)
    out: Document = {"Version": version, "Statement": foreign + sorted(owned, key=lambda s: s["Sid"])}
    for key, value in (document or {}).items():
        if key not in ("Version", "Statement"):
            out[key] = value
    return out


def _normalise(value: Any) -> Any:
    # IAM may hand back a one-element list as a bare string and reorder keys: both mean the same.
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        items = [_normalise(v) for v in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def canonical(document: Mapping[str, Any] | None) -> str:
    """A form of the document in which two semantically equal documents are equal strings."""
    if not document:
        return ""
    return json.dumps(_normalise(dict(document)), sort_keys=True, separators=(",", ":"))


def document_hash(document: Mapping[str, Any] | None) -> str | None:
    if not document:
        return None
    return hashlib.sha256(canonical(document).encode()).hexdigest()[:16]


def same_statements(a: Iterable[Statement], b: Iterable[Statement]) -> bool:
    return sorted(canonical(s) for s in a) == sorted(canonical(s) for s in b)


def size_without_whitespace(document: Mapping[str, Any]) -> int:
    """Characters IAM counts against its policy size quotas: white space outside strings is free."""
    return len(json.dumps(document, separators=(",", ":")))


REVOKE_SID_PREFIX = OWNED_SID_PREFIX + "Revoke"
