"""Owned statements, lease merging, rebuilding around foreign statements, canonical form and size."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.policy import (
    OWNED_SID_PREFIX,
    POLICY_VERSION,
    Lease,
    assume_statement,
    canonical,
    combine_leases,
    document_hash,
    is_owned,
    iso_z,
    owned_sid,
    rebuild,
    same_statements,
    size_without_whitespace,
    split,
    trust_statement,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ALICE = "arn:aws:iam::111111111111:user/alice"
BOB = "arn:aws:iam::111111111111:user/bob"
ROLE = "arn:aws:iam::222222222222:role/keyturn/Admin"


# ---- statement shapes ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lease", "condition"),
    [
        pytest.param(
            Lease(ALICE, NOW), {"DateLessThan": {"aws:CurrentTime": "2026-11-23T10:00:00Z"}}, id="expiry-only"
        ),
        pytest.param(
            Lease(ALICE, NOW, require_mfa=True),
            {
                "DateLessThan": {"aws:CurrentTime": "2026-11-23T10:00:00Z"},
                "Bool": {"aws:MultiFactorAuthPresent": "true"},
            },
            id="mfa",
        ),
        pytest.param(
            Lease(ALICE, NOW, session_name="alice"),
            {
                "DateLessThan": {"aws:CurrentTime": "2026-11-23T10:00:00Z"},
                "StringEquals": {"sts:RoleSessionName": "alice"},
            },
            id="session-name",
        ),
        pytest.param(
            Lease(ALICE, NOW.astimezone(timezone(timedelta(hours=2))), require_mfa=True, session_name="a"),
            {
                "DateLessThan": {"aws:CurrentTime": "2026-11-23T10:00:00Z"},
                "Bool": {"aws:MultiFactorAuthPresent": "true"},
                "StringEquals": {"sts:RoleSessionName": "a"},
            },
            id="non-utc-input-written-as-utc",
        ),
    ],
)
def test_statement_conditions(lease: Lease, condition: dict[str, Any]) -> None:
    trust, assume = trust_statement(lease), assume_statement(lease)
    assert trust["Condition"] == condition
    assert assume["Condition"] == condition
    assert trust == {
        "Sid": owned_sid(lease.key), "Effect": "Allow", "Principal": {"AWS": ALICE},
        "Action": "sts:AssumeRole", "Condition": condition,
    }
    assert assume == {
        "Sid": owned_sid(lease.key), "Effect": "Allow", "Action": "sts:AssumeRole",
        "Resource": ALICE, "Condition": condition,
    }


@given(st.text(min_size=1, max_size=200))
def test_owned_sid_is_stable_alphanumeric_and_recognised(key: str) -> None:
    sid = owned_sid(key)
    assert sid.startswith(OWNED_SID_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9]+", sid)
    assert sid == owned_sid(key)
    assert is_owned(trust_statement(Lease(key, NOW)))


def test_owned_sids_differ_per_key() -> None:
    assert owned_sid(ALICE) != owned_sid(BOB)


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param({"Effect": "Allow"}, id="no-sid"),
        pytest.param({"Sid": "AllowCI"}, id="other-sid"),
        pytest.param({"Sid": "keyturnLower"}, id="case-differs"),
        pytest.param({"Sid": 7}, id="non-string-sid"),
    ],
)
def test_foreign_statements_are_not_owned(statement: dict[str, Any]) -> None:
    assert not is_owned(statement)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        pytest.param(NOW, "2026-11-23T10:00:00Z", id="utc"),
        pytest.param(datetime(2026, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=3))), "2025-12-31T22:30:00Z",
                     id="offset-converted"),
        pytest.param(NOW.replace(microsecond=999_999), "2026-11-23T10:00:00Z", id="sub-second-dropped"),
    ],
)
def test_iso_z(moment: datetime, text: str) -> None:
    assert iso_z(moment) == text


def test_iso_z_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="naive"):
        iso_z(datetime(2026, 11, 23, 10, 0))


# ---- combining leases ----------------------------------------------------------------------------
def test_overlapping_leases_keep_the_later_expiry_in_either_order() -> None:
    short, long = Lease(ALICE, NOW + timedelta(hours=1)), Lease(ALICE, NOW + timedelta(hours=3))
    assert combine_leases([short, long], NOW)[ALICE].expires_at == long.expires_at
    assert combine_leases([long, short], NOW)[ALICE].expires_at == long.expires_at


def test_expired_leases_are_dropped_and_do_not_shorten_live_ones() -> None:
    out = combine_leases(
        [Lease(ALICE, NOW), Lease(BOB, NOW - timedelta(hours=1)), Lease(ROLE, NOW + timedelta(seconds=1))], NOW
    )
    assert set(out) == {ROLE}
    assert combine_leases([Lease(ALICE, NOW - timedelta(days=1), require_mfa=True)], NOW) == {}


@pytest.mark.parametrize("order", [pytest.param(0, id="mfa-first"), pytest.param(1, id="mfa-last")])
def test_mfa_is_sticky(order: int) -> None:
    leases = [Lease(ALICE, NOW + timedelta(hours=5), require_mfa=True), Lease(ALICE, NOW + timedelta(hours=9))]
    merged = combine_leases(leases if order == 0 else leases[::-1], NOW)[ALICE]
    assert merged.require_mfa is True
    assert merged.expires_at == NOW + timedelta(hours=9)


def test_distinct_keys_stay_separate() -> None:
    out = combine_leases([Lease(ALICE, NOW + timedelta(hours=1)), Lease(BOB, NOW + timedelta(hours=2))], NOW)
    assert {k: v.expires_at for k, v in out.items()} == {
        ALICE: NOW + timedelta(hours=1), BOB: NOW + timedelta(hours=2),
    }


# ---- rebuilding around foreign statements --------------------------------------------------------
FOREIGN_CI = {"Sid": "AllowCI", "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"},
              "Action": "sts:AssumeRole"}
FOREIGN_NOSID = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}


def test_rebuild_keeps_foreign_statements_in_order_and_replaces_owned_ones() -> None:
    stale = trust_statement(Lease(BOB, NOW - timedelta(days=1)))
    doc = {"Version": "2008-10-17", "Id": "keep-me", "Statement": [FOREIGN_CI, stale, FOREIGN_NOSID]}
    fresh = [trust_statement(Lease(ALICE, NOW + timedelta(hours=1)))]
    out = rebuild(doc, fresh)
    assert out == {"Version": "2008-10-17", "Id": "keep-me", "Statement": [FOREIGN_CI, FOREIGN_NOSID, *fresh]}
    assert doc["Statement"] == [FOREIGN_CI, stale, FOREIGN_NOSID]  # input untouched


@pytest.mark.parametrize(
    ("doc", "foreign"),
    [
        pytest.param(None, [], id="none"),
        pytest.param({}, [], id="empty"),
        pytest.param({"Statement": FOREIGN_CI}, [FOREIGN_CI], id="bare-statement-object"),
        pytest.param({"Version": POLICY_VERSION, "Statement": []}, [], id="no-statements"),
    ],
)
def test_rebuild_edge_documents(doc: dict[str, Any] | None, foreign: list[dict[str, Any]]) -> None:
    owned = [trust_statement(Lease(ALICE, NOW))]
    out = rebuild(doc, owned)
    assert out["Version"] == POLICY_VERSION
    assert out["Statement"] == [*foreign, *owned]


_scalar = st.text(alphabet="abcdefghijklmnopqrstuvwxyz:*/-", min_size=1, max_size=12)
_sid = st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True).filter(lambda s: not s.startswith(OWNED_SID_PREFIX))
_foreign = st.fixed_dictionaries(
    {"Effect": st.sampled_from(["Allow", "Deny"]), "Action": st.one_of(_scalar, st.lists(_scalar, max_size=3))},
    optional={"Sid": _sid, "Principal": st.fixed_dictionaries({"AWS": _scalar}), "Resource": _scalar},
)
_lease = st.builds(
    Lease,
    key=st.sampled_from([ALICE, BOB, ROLE, "arn:aws:iam::333333333333:role/ci"]),
    expires_at=st.integers(-3600, 86_400).map(lambda s: NOW + timedelta(seconds=s)),
    require_mfa=st.booleans(),
)


@given(
    foreign=st.lists(_foreign, max_size=6),
    old=st.lists(_lease, max_size=4),
    new=st.lists(_lease, max_size=6),
    data=st.data(),
)
def test_split_of_rebuild_returns_foreign_unchanged_and_owned_exactly(
    foreign: list[dict[str, Any]], old: list[Lease], new: list[Lease], data: st.DataObject
) -> None:
    stale = [trust_statement(lease) for lease in old]
    mixed = list(foreign)
    for statement in stale:  # stale owned statements anywhere among the foreign ones
        mixed.insert(data.draw(st.integers(0, len(mixed))), statement)
    doc = {"Version": POLICY_VERSION, "Statement": mixed}
    snapshot = copy.deepcopy(doc)
    owned = [trust_statement(lease) for lease in combine_leases(new, NOW).values()]

    out = rebuild(doc, owned)
    got_foreign, got_owned = split(out)
    assert got_foreign == foreign
    assert same_statements(got_owned, owned) and len(got_owned) == len(owned)
    assert [s["Sid"] for s in got_owned] == sorted(s["Sid"] for s in owned)
    assert doc == snapshot
    assert rebuild(out, owned) == out
    assert rebuild(out, got_owned) == out


# ---- canonical form, hashing and size ------------------------------------------------------------
def test_canonical_ignores_single_element_lists_and_key_order() -> None:
    a = {"Version": POLICY_VERSION, "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole"],
                                                  "Principal": {"AWS": [ALICE]}}]}
    b = {"Statement": {"Principal": {"AWS": ALICE}, "Action": "sts:AssumeRole", "Effect": "Allow"},
         "Version": POLICY_VERSION}
    assert canonical(a) == canonical(b)
    assert document_hash(a) == document_hash(b)


def test_canonical_and_hash_tell_different_documents_apart() -> None:
    a = rebuild(None, [trust_statement(Lease(ALICE, NOW))])
    b = rebuild(None, [trust_statement(Lease(ALICE, NOW + timedelta(seconds=1)))])
    assert canonical(a) != canonical(b)
    assert document_hash(a) != document_hash(b)
    assert document_hash(a) is not None and re.fullmatch(r"[0-9a-f]{16}", document_hash(a) or "")


@pytest.mark.parametrize("doc", [pytest.param(None, id="none"), pytest.param({}, id="empty")])
def test_empty_documents_have_no_hash(doc: dict[str, Any] | None) -> None:
    assert document_hash(doc) is None
    assert canonical(doc) == ""


def test_same_statements_ignores_order_but_not_content() -> None:
    s1, s2 = trust_statement(Lease(ALICE, NOW)), trust_statement(Lease(BOB, NOW))
    assert same_statements([s1, s2], [s2, s1])
    assert not same_statements([s1], [s1, s2])
    assert not same_statements([s1], [trust_statement(Lease(ALICE, NOW, require_mfa=True))])


def test_size_without_whitespace_ignores_indentation_but_counts_text() -> None:
    doc = rebuild({"Statement": [FOREIGN_CI]}, [trust_statement(Lease(ALICE, NOW, require_mfa=True))])
    indented, compact = json.dumps(doc, indent=4), json.dumps(doc, separators=(",", ":"))
    assert len(indented) > len(compact)
    assert size_without_whitespace(json.loads(indented)) == size_without_whitespace(json.loads(compact))
    assert size_without_whitespace(doc) == len(compact)
    longer = copy.deepcopy(doc)
    longer["Statement"][0]["Sid"] = "AllowCI" + "x" * 10
    assert size_without_whitespace(longer) == size_without_whitespace(doc) + 10


# ---- owned Sids by exact format; session cuts by person -------------------------------------------------
@pytest.mark.parametrize("sid", [
    "KeyturnSecurityTeamDeny", "Keyturn", "KeyturnDD1AFC", "keyturn" + "A" * 24, "Keyturn" + "a" * 24,
    "Keyturn" + "A" * 25, "KeyturnRevoke" + "A" * 19, "Keyturn" + "A" * 24 + "\n",
])
def test_a_sid_that_only_starts_with_keyturn_is_foreign(sid: str) -> None:
    """A security team's own `KeyturnSecurityTeamDeny` must never be taken for Keyturn's and removed."""
    assert not is_owned({"Sid": sid, "Effect": "Deny"})


def test_keyturns_own_sids_are_owned() -> None:
    from service.core.cuts import PersonCut, armed_statement, pack_statement

    assert is_owned(trust_statement(Lease("arn:aws:iam::111111111111:user/alice", NOW)))
    assert is_owned(armed_statement(PersonCut("arn:aws:iam::1:user/alice", "AROAEXAMPLE:alice", NOW, True)))
    assert is_owned(pack_statement(3, [PersonCut("arn:aws:iam::1:user/alice", "AROAEXAMPLE:alice", NOW, False)]))
