"""Leases on real processes: overlapping grants and extensions never revoke each other.

Two grants of one person to one role are two leases on one owned statement, whose DateLessThan is the
later expiry. The first grant's end neither removes the statement nor cuts the person's sessions (the
deny in the role's inline policy); only the end of the last lease does. An extension is a new lease
starting where the old one ends, so access never blinks.

"Never blinks" is proven from the record, not from timing: every trust policy the worker sent through
the proxy is inspected, in order, and every session-deny write is placed in the audit log after the last
lease's end. Every wait is a bounded poll; no timing is asserted.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from service.core.cuts import armed_sid
from service.core.policy import REVOKE_SID_PREFIX, iso_z, owned_sid
from service.core.rules import Vote
from service.core.targets import sessions_target
from service.operations.decide_request import decide_request
from service.operations.request_access import request_access
from tests.support.iam_truth import IamTruth
from tests.support.live import ACCOUNT, ALICE, APPROVER, ROLE_ID, ROLE_NAME, SHORT, WAIT, Keyturn

pytestmark = pytest.mark.slow
UPDATE = "UpdateAssumeRolePolicy"


def extend(kt: Keyturn, grant_id: int, seconds: float) -> int:
    """File an extension of `grant_id` and approve it: the new grant's id."""
    filed = request_access(kt.ctx, requester=ALICE, role_id=ROLE_ID, duration=timedelta(seconds=seconds),
                           reason="more time", extends_grant_id=grant_id)
    decided = decide_request(kt.ctx, request_id=filed.request_id, approver=APPROVER, vote=Vote.APPROVE)
    assert decided.grant_id is not None, decided
    return int(decided.grant_id)


def session_denies(kt: Keyturn) -> list[dict[str, Any]]:
    """Keyturn's session cuts on the role, on every page (its inline policy and the managed ones)."""
    docs = []
    for name in kt.iam.list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]:
        docs.append(kt.iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=name)["PolicyDocument"])
    for attached in kt.iam.list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"]:
        version = kt.iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        docs.append(kt.iam.get_policy_version(PolicyArn=attached["PolicyArn"],
                                              VersionId=version)["PolicyVersion"]["Document"])
    return [s for doc in docs for s in doc["Statement"] if str(s.get("Sid", "")).startswith(REVOKE_SID_PREFIX)]


def alice_deny_sid() -> str:
    return armed_sid("arn:aws:iam::123456789012:user/alice")  # the person's (their identity key) only


def armed_at(deny: dict[str, Any]) -> str:
    return str(deny["Condition"]["DateGreaterThanEquals"]["aws:CurrentTime"])


def trust_writes_holding_alice(kt: Keyturn) -> list[bool]:
    """For each trust policy the worker sent IAM, in order: did it hold alice's statement?"""
    sid = owned_sid(kt.catalog.principals[ALICE])
    docs = [json.loads(body["PolicyDocument"][0]) for body in kt.proxy.bodies(UPDATE)]
    return [any(s.get("Sid") == sid for s in doc["Statement"]) for doc in docs]


def assert_overlap_then_end(kt: Keyturn, truth: IamTruth, first: int, last: int) -> None:
    """The shared story: `first` ends, access stays with `last`'s expiry and no cut; then `last` ends."""
    later = kt.row(last).expires_at
    kt.wait_state(first, "expired")
    kt.wait_settled()  # the follow-up sync of the role's sessions too
    assert kt.ctx.now() < later, "the scenario needs the last lease still running here; the machine is too slow"
    assert kt.state(last) == "active"
    [statement] = kt.statements_for(ALICE)
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(later)}
    # One lease, one cut, armed at its expiry: the first lease's end moved nothing.
    [deny] = session_denies(kt)
    assert deny["Sid"] == alice_deny_sid() and armed_at(deny) == iso_z(later)
    truth.assert_matches_db()

    kt.wait_state(last, "expired", timeout=WAIT + (later - kt.ctx.now()).total_seconds())
    kt.wait_settled()
    assert kt.statements_for(ALICE) == []
    [deny] = session_denies(kt)  # the armed cut, as it was: it has denied her sessions since that second
    assert deny["Sid"] == alice_deny_sid() and armed_at(deny) == iso_z(later)
    assert deny["Condition"]["DateLessThan"] == {"aws:TokenIssueTime": iso_z(later)}
    truth.assert_matches_db()
    truth.assert_chain()

    # Never blinked: every trust policy written held alice, but the very last one (the last lease's end).
    holding = trust_writes_holding_alice(kt)
    assert holding[-1] is False and all(holding[:-1]) and len(holding) >= 2, holding
    # The cut was armed before any access: the write adding it is audited before the first trust write.
    sessions_key = sessions_target(ACCOUNT, ROLE_NAME).key
    armed = [e for e in kt.audits(action="iam.write", target_key=sessions_key)
             if alice_deny_sid() in (e.detail or {}).get("added", [])]
    trust_writes = kt.audits(action="iam.write", target_key=kt.target_key())
    assert armed and trust_writes and armed[0].id < trust_writes[0].id, [(e.id, e.detail) for e in armed]
    for grant in (first, last):
        assert [e.action for e in kt.audits(grant_id=grant)] == [
            "grant.created", "grant.active", "grant.expiring", "grant.expired"]


def test_overlapping_grants_keep_access_until_the_later_one_ends(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    truth = IamTruth(kt)
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    seeded = kt.foreign()
    first = kt.grant(seconds=10)
    second = kt.grant(seconds=30)
    assert kt.row(second).expires_at > kt.row(first).expires_at
    kt.wait_state(first, "active")
    kt.wait_state(second, "active")
    [statement] = kt.statements_for(ALICE)  # one statement for both leases: the later expiry
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(kt.row(second).expires_at)}
    assert_overlap_then_end(kt, truth, first, second)
    assert kt.trust()["Statement"] == seeded


def test_an_extension_is_a_new_lease_that_never_blinks(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    truth = IamTruth(kt)
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    first = kt.grant(seconds=10)
    kt.wait_state(first, "active")
    extension = extend(kt, first, seconds=20)
    # It starts where the old lease ends, not now.
    assert kt.row(extension).expires_at == kt.row(first).expires_at + timedelta(seconds=20)
    assert kt.row(extension).request_id != kt.row(first).request_id
    kt.wait_state(extension, "active")
    assert_overlap_then_end(kt, truth, first, extension)


def test_a_new_grant_lifts_the_previous_session_cut(keyturn_procs: Keyturn) -> None:
    """The database keeps no cut for someone with live access (session_denies): IAM must follow it when
    the new grant starts, not only when some later grant of the role ends."""
    kt = keyturn_procs
    truth = IamTruth(kt)
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    first = kt.grant(seconds=SHORT)
    kt.wait_state(first, "expired")
    kt.wait_settled()
    [cut] = session_denies(kt)
    assert cut["Sid"] == alice_deny_sid() and armed_at(cut) == iso_z(kt.row(first).expires_at)
    again = kt.grant(seconds=1800)
    kt.wait_state(again, "active")
    kt.wait_settled()
    # Re-armed at the new lease's expiry before her access was written: her new sessions are not cut now.
    [cut] = session_denies(kt)
    assert cut["Sid"] == alice_deny_sid() and armed_at(cut) == iso_z(kt.row(again).expires_at)
    assert len(kt.statements_for(ALICE)) == 1
    truth.assert_matches_db()
    truth.assert_chain()
