"""Who gets in: every owned statement admits exactly one person, read back from moto and judged by an IAM
evaluator that evaluates conditions (moto evaluates none). On SQLite and PostgreSQL.

The people: alice and bob are IAM users; carol and dave sign in through IAM Identity Center with the same
permission set (so the same role, AWSReservedSSO_Admin_…); erin is a federated role session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from service.catalog import parse_catalog
from service.core.rules import Reason
from service.core.states import GrantState
from service.core.targets import TargetError
from service.operations.context import Refused
from service.operations.granting import target_of
from tests.integration.helpers_sync import ACCOUNT, World, make_world, owned, raw_catalog
from tests.support import iam_eval

ALICE, BOB, CAROL, DAVE, ERIN = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001", "U0ERIN001"
FED_ROLE = f"arn:aws:iam::{ACCOUNT}:role/federated/People"
GROUP = "keyturn-billing"


def _raw() -> dict[str, Any]:
    raw = raw_catalog()
    raw["principals"] = {ALICE: f"arn:aws:iam::{ACCOUNT}:user/alice", BOB: f"arn:aws:iam::{ACCOUNT}:user/bob"}
    raw["identities"] = [
        {"slack": CAROL, "kind": "sso_user", "user_name": "carol@example.com",
         "permission_sets": [{"account": "moto", "permission_set": "Admin"}]},
        {"slack": DAVE, "kind": "sso_user", "user_name": "dave@example.com",
         "permission_sets": [{"account": "moto", "permission_set": "Admin"}]},
        {"slack": ERIN, "kind": "iam_role", "role_arn": FED_ROLE, "session_name": "erin"},
    ]
    raw["roles"].append({"id": "billing-group", "name": "Billing through a group's policy", "account": "moto",
                         "role_name": "Billing", "path": "/keyturn/", "strategy": "inline_policy",
                         "group": GROUP, "approvers": ["U0APPR01"]})
    return raw


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url, _raw())
    w.iam.create_group(GroupName=GROUP)
    for user in ("alice", "bob", "mallory"):
        if user == "mallory":
            w.iam.create_user(UserName=user)
        w.iam.add_user_to_group(GroupName=GROUP, UserName=user)
    yield w
    w.close()


def _sign_in_role(world: World, prefix: str = "AWSReservedSSO_Admin_") -> dict[str, Any]:
    roles = world.iam.list_roles(PathPrefix="/aws-reserved/sso.amazonaws.com/")["Roles"]
    [role] = [r for r in roles if r["RoleName"].startswith(prefix)]
    return dict(role)


def _target(world: World, role_id: str = "ops-admin") -> tuple[str, str]:
    role = world.iam.get_role(RoleName=world.catalog.roles[role_id].role_name)["Role"]
    return role["Arn"], role["RoleId"]


def test_sso_person_is_the_only_one_let_in_through_their_permission_set_role(world: World) -> None:
    grant_id = world.grant(CAROL, "ops-admin")
    world.sync("ops-admin", user=CAROL)
    assert world.state(grant_id) == GrantState.ACTIVE.value
    trust = world.trust("ops-admin")
    [statement] = owned(trust)
    ps = _sign_in_role(world)
    assert statement["Principal"] == {"AWS": ps["Arn"]}
    assert statement["Condition"]["StringEquals"] == {
        "sts:RoleSessionName": "carol@example.com", "aws:userid": f"{ps['RoleId']}:carol@example.com"}
    target_arn, _ = _target(world)
    expires = world.row(grant_id).expires_at
    at = expires - timedelta(seconds=1)

    def assume(session: str, new_name: str | None = None, when: Any = at) -> iam_eval.Decision:
        request = iam_eval.session_assumes(ps["Arn"], ps["RoleId"], session, target_arn, at=when,
                                           session_name=new_name)
        return iam_eval.may_assume(trust, [], request)

    assert assume("carol@example.com").allowed
    # Everyone else who signs in with the same permission set is refused, and so is carol under a session
    # name other than her own (she could not then be told apart), and carol at the expiry second.
    assert not assume("dave@example.com").allowed
    assert not assume("carol@example.com", new_name="dave@example.com").allowed
    assert not assume("carol@example.com", when=expires).allowed


def test_federated_person_is_pinned_to_their_session_name(world: World) -> None:
    grant_id = world.grant(ERIN, "ops-admin")
    world.sync("ops-admin", user=ERIN)
    assert world.state(grant_id) == GrantState.ACTIVE.value
    trust = world.trust("ops-admin")
    fed = world.iam.get_role(RoleName="People")["Role"]
    target_arn, _ = _target(world)
    at = world.row(grant_id).expires_at - timedelta(seconds=1)
    ok = iam_eval.session_assumes(fed["Arn"], fed["RoleId"], "erin", target_arn, at=at)
    other = iam_eval.session_assumes(fed["Arn"], fed["RoleId"], "frank", target_arn, at=at)
    assert iam_eval.may_assume(trust, [], ok).allowed
    assert not iam_eval.may_assume(trust, [], other).allowed


def test_iam_user_keeps_the_principal_and_session_pin(world: World) -> None:
    grant_id = world.grant(ALICE, "ops-admin")
    world.sync("ops-admin")
    trust = world.trust("ops-admin")
    target_arn, _ = _target(world)
    at = world.row(grant_id).expires_at - timedelta(seconds=1)
    alice, bob = world.arn(ALICE), world.arn(BOB)
    assert iam_eval.may_assume(trust, [], iam_eval.user_assumes(alice, target_arn, at=at, session_name="alice")).allowed
    assert not iam_eval.may_assume(trust, [], iam_eval.user_assumes(alice, target_arn, at=at,
                                                                    session_name="bob")).allowed
    assert not iam_eval.may_assume(trust, [], iam_eval.user_assumes(bob, target_arn, at=at,
                                                                    session_name="bob")).allowed


def test_a_group_policy_admits_only_the_members_granted(world: World) -> None:
    """inline_policy on a group: one statement per grantee, pinned to that member (aws:username)."""
    first = world.grant(ALICE, "billing-group")
    second = world.grant(BOB, "billing-group")
    key = world.target("billing-group", ALICE)
    assert key == world.target("billing-group", BOB)  # one policy on the group, for both
    world.sync(target_key=key)
    assert world.state(first) == world.state(second) == GrantState.ACTIVE.value
    policy = world.iam.get_group_policy(GroupName=GROUP, PolicyName="keyturn-access")["PolicyDocument"]
    assert len(owned(policy)) == 2
    billing = world.catalog.roles["billing-group"].arn
    at = world.row(first).expires_at - timedelta(seconds=1)

    def may(user: str, session: str) -> bool:
        request = iam_eval.user_assumes(f"arn:aws:iam::{ACCOUNT}:user/{user}", billing, at=at, session_name=session)
        return iam_eval.evaluate([policy], request).allowed

    assert may("alice", "alice") and may("bob", "bob")
    assert not may("mallory", "mallory")  # a member of the group who was never granted
    assert not may("alice", "bob")  # a grantee under another's session name
    # Bob's access ends; alice's statement stays, and bob is out.
    world.revoke(second)
    world.sync(target_key=key)
    policy = world.iam.get_group_policy(GroupName=GROUP, PolicyName="keyturn-access")["PolicyDocument"]
    assert may("alice", "alice") and not may("bob", "bob")


def test_approval_after_the_requester_was_removed_or_remapped_is_refused(world: World) -> None:
    removed = world.request(ALICE, "ops-admin")
    remapped = world.request(BOB, "ops-admin")
    raw = _raw()
    del raw["principals"][ALICE]
    raw["principals"][BOB] = f"arn:aws:iam::{ACCOUNT}:user/robert"
    world.ctx.catalog = parse_catalog(raw)
    from service.core.rules import Vote
    from service.operations.decide_request import decide_request

    for request_id, reason in ((removed, Reason.REQUESTER_UNMAPPED), (remapped, Reason.IDENTITY_CHANGED)):
        with pytest.raises(Refused) as refused:
            decide_request(world.ctx, request_id=request_id, approver="U0APPR01", vote=Vote.APPROVE)
        assert refused.value.reason is reason
    assert world.audits("grant.created") == []
    assert {e.detail["reason"] for e in world.audits("vote.refused") if e.detail} == \
        {Reason.REQUESTER_UNMAPPED.value, Reason.IDENTITY_CHANGED.value}


def test_live_grant_of_a_person_no_longer_mapped_ends_at_the_next_sync(world: World) -> None:
    grant_id = world.grant(ALICE, "ops-admin")
    kept = world.grant(CAROL, "ops-admin")
    world.sync("ops-admin")
    assert len(owned(world.trust("ops-admin"))) == 2
    raw = _raw()
    del raw["principals"][ALICE]
    world.ctx.catalog = parse_catalog(raw)
    world.sync("ops-admin", user=CAROL)
    assert world.state(grant_id) == GrantState.REVOKED.value
    assert world.state(kept) == GrantState.ACTIVE.value
    [statement] = owned(world.trust("ops-admin"))
    assert statement["Principal"] == {"AWS": _sign_in_role(world)["Arn"]}
    [event] = world.audits("grant.unmapped")
    assert event.grant_id == grant_id


def test_reconcile_ends_grants_of_people_removed_from_the_catalogue(world: World) -> None:
    from service.operations.sweep import reconcile_all

    grant_id = world.grant(BOB, "ops-admin")
    world.sync("ops-admin", user=BOB)
    raw = _raw()
    del raw["principals"][BOB]
    world.ctx.catalog = parse_catalog(raw)
    target = world.row(grant_id).target_key
    reconcile_all(world.ctx)
    assert world.state(grant_id) == GrantState.ENDING.value
    assert target in world.dispatch.urgent_syncs
    world.sync(target_key=target)
    assert world.state(grant_id) == GrantState.REVOKED.value
    assert owned(world.trust("ops-admin")) == []


def test_a_missing_sign_in_role_fails_only_that_persons_grant(world: World) -> None:
    ps = _sign_in_role(world)
    world.iam.delete_role(RoleName=ps["RoleName"])
    doomed = world.grant(DAVE, "ops-admin")
    fine = world.grant(ALICE, "ops-admin")
    world.sync("ops-admin")
    assert world.state(fine) == GrantState.ACTIVE.value
    row = world.row(doomed)
    assert row.state == GrantState.FAILED.value
    assert "permission set Admin" in (row.failure_reason or "")
    [statement] = owned(world.trust("ops-admin"))
    assert statement["Principal"] == {"AWS": world.arn(ALICE)}


def test_role_based_people_cannot_use_user_only_strategies(world: World) -> None:
    for strategy_role in ("ro-group", "billing-inline", "billing-group"):
        with pytest.raises(TargetError):
            target_of(world.catalog.roles[strategy_role], world.catalog.identities[CAROL])
        with pytest.raises(Refused) as refused:
            world.request(CAROL, strategy_role)
        assert refused.value.reason is Reason.UNSUPPORTED_PRINCIPAL


def test_the_request_row_is_not_trusted_for_the_identity(world: World) -> None:
    """Even if the stored principal were altered, the statement is built from the catalogue's identity."""
    grant_id = world.grant(ALICE, "ops-admin")
    with world.ctx.store.begin() as session:
        from service.store.models import Grant
        row = session.get(Grant, grant_id)
        assert row is not None
        row.principal_arn = f"arn:aws:iam::{ACCOUNT}:user/mallory"
    world.sync("ops-admin")
    [statement] = owned(world.trust("ops-admin"))
    assert statement["Principal"] == {"AWS": world.arn(ALICE)}
    assert dataclasses.replace(world.catalog.identities[ALICE]).key == world.row(grant_id).identity_key
