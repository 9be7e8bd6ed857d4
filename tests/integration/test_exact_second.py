"""Access ends at the exact second, enforced by IAM itself, open sessions included, with every worker down.

Each strategy: alice and bob are granted and one sync runs (a worker's one step); after that nothing runs.
Judged by the IAM evaluator over the documents read back from moto (moto evaluates no conditions): one
second before alice's expiry her open session and a new AssumeRole work; at the expiry second both are
refused; bob's are untouched; a later grant's session of hers works. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from service.core.states import GrantState
from tests.integration.helpers_sync import ACCOUNT, World, make_world
from tests.support import iam_eval

ALICE, BOB = "U0ALICE01", "U0BOB0001"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
ROLES = {"ops-admin": "OpsAdmin", "ro-group": "ReadOnly", "billing-inline": "Billing"}


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url)
    # The operator's side of group_membership: the group may assume its role, each member as themselves.
    ro = w.iam.get_role(RoleName="ReadOnly")["Role"]["Arn"]
    w.iam.put_group_policy(GroupName="keyturn-ro", PolicyName="assume-readonly", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ro,
                                                "Condition": {"StringEquals": {
                                                    "sts:RoleSessionName": "${aws:username}"}}}]}))
    yield w
    w.close()


def _identity_policies(world: World, user: str) -> list[dict[str, Any]]:
    """The user's own policies and their groups' policies, as IAM holds them."""
    docs = []
    for name in world.iam.list_user_policies(UserName=user)["PolicyNames"]:
        docs.append(dict(world.iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]))
    for group in world.iam.list_groups_for_user(UserName=user)["Groups"]:
        for name in world.iam.list_group_policies(GroupName=group["GroupName"])["PolicyNames"]:
            docs.append(dict(world.iam.get_group_policy(GroupName=group["GroupName"],
                                                        PolicyName=name)["PolicyDocument"]))
    return docs


def new_session(world: World, role_name: str, user: str, at: datetime) -> bool:
    """May `user` call sts:AssumeRole on the role now (as themselves), by the trust and their own policies?"""
    role = world.iam.get_role(RoleName=role_name)["Role"]
    request = iam_eval.user_assumes(f"arn:aws:iam::{ACCOUNT}:user/{user}", role["Arn"], at=at, session_name=user)
    return iam_eval.may_assume(role["AssumeRolePolicyDocument"], _identity_policies(world, user), request).allowed


def open_session(world: World, role_name: str, user: str, *, issued_at: datetime, at: datetime) -> bool:
    role = world.iam.get_role(RoleName=role_name)["Role"]
    request = iam_eval.session_calls(role["Arn"], role["RoleId"], user, issued_at=issued_at, at=at)
    return iam_eval.session_may([ALLOW_ALL, *world.role_policies(role_name)], request).allowed


@pytest.mark.parametrize("role_id", list(ROLES))
def test_at_the_expiry_second_iam_refuses_new_and_open_sessions_with_no_worker(world: World, role_id: str) -> None:
    name = ROLES[role_id]
    alice = world.grant(ALICE, role_id, timedelta(minutes=10))
    bob = world.grant(BOB, role_id, timedelta(hours=2))
    world.sync(role_id)  # alice's target (one per user for inline policies)
    world.sync(role_id, user=BOB)
    assert world.state(alice) == world.state(bob) == GrantState.ACTIVE.value
    opened = world.clock()
    expiry = world.row(alice).expires_at.replace(microsecond=0)  # IAM compares to the second
    before = expiry - timedelta(seconds=1)
    # From here on no worker runs: no sweep, no sync.
    assert new_session(world, name, "alice", before)
    assert open_session(world, name, "alice", issued_at=opened, at=before)
    assert not open_session(world, name, "alice", issued_at=opened, at=expiry)
    if role_id == "ro-group":
        # The membership does not expire by itself: AssumeRole still succeeds, but that session can do nothing.
        assert new_session(world, name, "alice", expiry)
        assert not open_session(world, name, "alice", issued_at=expiry, at=expiry)
    else:
        assert not new_session(world, name, "alice", expiry)
    # bob, whose access is still live, is untouched at that second.
    assert new_session(world, name, "bob", expiry)
    assert open_session(world, name, "bob", issued_at=opened, at=expiry)


@pytest.mark.parametrize("role_id", list(ROLES))
def test_a_later_grants_sessions_are_not_caught_by_an_earlier_cut(world: World, role_id: str) -> None:
    name = ROLES[role_id]
    first = world.grant(ALICE, role_id, timedelta(minutes=10))
    world.sync(role_id)
    opened = world.clock()
    world.clock.advance(minutes=10, seconds=1)
    world.sweep()
    world.sync(role_id)
    assert world.state(first) == GrantState.EXPIRED.value
    assert not open_session(world, name, "alice", issued_at=opened, at=world.clock())
    second = world.grant(ALICE, role_id, timedelta(minutes=30))
    world.sync(role_id)
    assert world.state(second) == GrantState.ACTIVE.value
    reopened = world.clock() + timedelta(seconds=1)
    assert new_session(world, name, "alice", reopened)
    assert open_session(world, name, "alice", issued_at=reopened, at=reopened + timedelta(minutes=5))
    # and the new lease's cut is armed at its own expiry
    expiry = world.row(second).expires_at.replace(microsecond=0)
    assert not open_session(world, name, "alice", issued_at=reopened, at=expiry)


def test_an_extension_moves_the_cut_before_the_old_expiry(world: World) -> None:
    from service.core.rules import Vote
    from service.operations.decide_request import decide_request
    from service.operations.request_access import request_access

    first = world.grant(ALICE, "ops-admin", timedelta(minutes=10))
    world.sync()
    opened = world.clock()
    old = world.row(first).expires_at.replace(microsecond=0)
    filed = request_access(world.ctx, requester=ALICE, role_id="ops-admin", duration=timedelta(minutes=30),
                           reason="more", extends_grant_id=first)
    decided = decide_request(world.ctx, request_id=filed.request_id, approver="U0APPR01", vote=Vote.APPROVE)
    assert decided.grant_id is not None
    world.sync()
    new = world.row(decided.grant_id).expires_at.replace(microsecond=0)
    assert new > old
    assert open_session(world, "OpsAdmin", "alice", issued_at=opened, at=old)  # the old cut was moved
    assert new_session(world, "OpsAdmin", "alice", old)
    assert not open_session(world, "OpsAdmin", "alice", issued_at=opened, at=new)


def test_a_cut_that_cannot_be_armed_refuses_the_grant_before_any_access(db_url: str, moto_reset: str) -> None:
    from tests.integration.helpers_sync import raw_catalog

    w = make_world(db_url, raw_catalog(session_cut_pages=0))
    try:
        # The role's inline policies leave no room for a cut: the grant must not be given.
        w.iam.put_role_policy(RoleName="OpsAdmin", PolicyName="operator", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Sid": "Pad", "Effect": "Deny", "Action": "s3:X",
                                                     "Resource": "arn:aws:s3:::" + "x" * 10050}]}))
        grant_id = w.grant(ALICE, "ops-admin")
        report = w.sync()
        row = w.row(grant_id)
        assert row.state == GrantState.FAILED.value and "session cut" in (row.failure_reason or "")
        assert grant_id in report.failed
        trust = w.trust()
        assert all(w.arn(ALICE) not in json.dumps(s) for s in trust["Statement"])  # never written
    finally:
        w.close()
