"""sync(target) for group_membership and inline_policy roles against moto, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest

from service.aws.documents import INLINE_POLICY_NAME, USER_INLINE_TOTAL
from service.aws.groups import MAX_GROUPS_PER_USER
from service.core.policy import OWNED_SID_PREFIX, iso_z, size_without_whitespace
from service.core.states import GrantState
from tests.integration.helpers_sync import World, make_world

ACTIVE, EXPIRED, FAILED = GrantState.ACTIVE.value, GrantState.EXPIRED.value, GrantState.FAILED.value
GROUP = "keyturn-ro"
FOREIGN_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "TeamRead", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::team-bucket/*"}]}


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.close()


def _expire_all(world: World, *grant_ids: int) -> None:
    latest = max(world.row(g).expires_at for g in grant_ids)
    world.clock.advance(seconds=(latest - world.clock()).total_seconds() + 1)
    assert sorted(world.sweep().expiring) == sorted(grant_ids)


# ---- group_membership -----------------------------------------------------------------------------
def test_group_member_added_then_removed_at_expiry(world: World) -> None:
    key = world.target("ro-group", "U0ALICE01")
    grant_id = world.grant("U0ALICE01", "ro-group", timedelta(minutes=30))
    assert world.group_members(GROUP) == set()
    report = world.sync(target_key=key)
    assert report.wrote and report.activated == [grant_id]
    assert world.group_members(GROUP) == {"alice"}
    assert world.owned_members(key) == {"alice"}
    assert world.state(grant_id) == ACTIVE
    assert [c.params for c in world.recorder.writes()] == [{"GroupName": GROUP, "UserName": "alice"}]
    assert not world.sync(target_key=key).wrote  # idempotent

    _expire_all(world, grant_id)
    report = world.sync(target_key=key)
    assert report.wrote and report.ended == [grant_id]
    assert world.group_members(GROUP) == set()
    assert world.owned_members(key) == set()
    assert world.state(grant_id) == EXPIRED
    assert world.audits("iam.write", target_key=key)[-1].detail["removed"] == ["alice"]


def test_membership_keyturn_did_not_add_is_never_removed(world: World) -> None:
    world.iam.add_user_to_group(GroupName=GROUP, UserName="carol")  # a member before Keyturn
    key = world.target("ro-group", "U0CAROL01")
    carol = world.grant("U0CAROL01", "ro-group", timedelta(minutes=30))
    alice = world.grant("U0ALICE01", "ro-group", timedelta(minutes=30))
    world.sync(target_key=key)
    assert world.state(carol) == ACTIVE and world.state(alice) == ACTIVE
    assert world.group_members(GROUP) == {"alice", "carol"}
    assert world.owned_members(key) == {"alice"}  # carol's membership is not Keyturn's

    _expire_all(world, carol, alice)
    world.sync(target_key=key)
    assert world.state(carol) == EXPIRED and world.state(alice) == EXPIRED
    assert world.group_members(GROUP) == {"carol"}
    assert [c.params for c in world.recorder.writes("RemoveUserFromGroup")] == [
        {"GroupName": GROUP, "UserName": "alice"}]
    assert not world.sync(target_key=key).wrote


def test_user_in_ten_groups_fails_and_is_not_added(world: World) -> None:
    for i in range(MAX_GROUPS_PER_USER):
        world.iam.create_group(GroupName=f"other-{i}")
        world.iam.add_user_to_group(GroupName=f"other-{i}", UserName="bob")
    key = world.target("ro-group", "U0BOB0001")
    bob = world.grant("U0BOB0001", "ro-group")
    alice = world.grant("U0ALICE01", "ro-group")
    report = world.sync(target_key=key)
    assert list(report.failed) == [bob] and report.activated == [alice]
    assert world.state(bob) == FAILED and world.state(alice) == ACTIVE
    reason = world.row(bob).failure_reason or ""
    assert "10 groups" in reason and "bob" in reason
    assert world.group_members(GROUP) == {"alice"}
    assert world.owned_members(key) == {"alice"}
    assert all(c.params["UserName"] != "bob" for c in world.recorder.writes())
    assert len(world.iam.list_groups_for_user(UserName="bob")["Groups"]) == MAX_GROUPS_PER_USER


# ---- inline_policy --------------------------------------------------------------------------------
def _inline(world: World, user: str, name: str = INLINE_POLICY_NAME) -> dict:
    return dict(world.iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"])


def test_inline_policy_written_then_deleted_at_expiry(world: World) -> None:
    world.iam.put_user_policy(UserName="alice", PolicyName="team-read", PolicyDocument=json.dumps(FOREIGN_POLICY))
    key = world.target("billing-inline", "U0ALICE01")
    assert key == "inline_user:123456789012:alice"
    grant_id = world.grant("U0ALICE01", "billing-inline", timedelta(minutes=20))
    report = world.sync(target_key=key)
    assert report.wrote and report.activated == [grant_id]
    doc = _inline(world, "alice")
    [statement] = doc["Statement"]
    assert statement["Sid"].startswith(OWNED_SID_PREFIX)
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Resource"] == world.catalog.roles["billing-inline"].arn
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(world.row(grant_id).expires_at)}
    assert sorted(world.iam.list_user_policies(UserName="alice")["PolicyNames"]) == [INLINE_POLICY_NAME,
                                                                                    "team-read"]
    assert not world.sync(target_key=key).wrote

    _expire_all(world, grant_id)
    report = world.sync(target_key=key)
    assert report.wrote and report.ended == [grant_id]
    assert world.state(grant_id) == EXPIRED
    # deleted, not left behind empty; the other inline policy untouched
    assert world.iam.list_user_policies(UserName="alice")["PolicyNames"] == ["team-read"]
    assert _inline(world, "alice", "team-read") == FOREIGN_POLICY
    deletes = world.recorder.writes("DeleteUserPolicy")
    assert [c.params for c in deletes] == [{"UserName": "alice", "PolicyName": INLINE_POLICY_NAME}]
    assert world.recorder.writes("PutUserPolicy")[0].params["UserName"] == "alice"


def _big_foreign_policy(world: World, user: str) -> dict:
    """A foreign inline policy of 1,900 characters: Keyturn's statement no longer fits under 2,048."""
    big = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Big", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/"}]}
    big["Statement"][0]["Resource"] += "x" * (1900 - size_without_whitespace(big))
    assert size_without_whitespace(big) == 1900
    world.iam.put_user_policy(UserName=user, PolicyName="big-foreign", PolicyDocument=json.dumps(big))
    return big


def test_inline_size_limit_fails_the_grant_and_writes_nothing(world: World) -> None:
    big = _big_foreign_policy(world, "bob")
    key = world.target("billing-inline", "U0BOB0001")
    bob = world.grant("U0BOB0001", "billing-inline")
    alice = world.grant("U0ALICE01", "billing-inline")  # another user's inline target, unaffected
    report = world.sync(target_key=key)
    assert not report.wrote and list(report.failed) == [bob] and report.activated == []
    assert world.state(bob) == FAILED
    assert f"limit is {USER_INLINE_TOTAL}" in (world.row(bob).failure_reason or "")
    # Nothing on bob's user (his session cut was armed first, on the role: a deny, harmless and lifted later).
    assert world.recorder.writes("PutUserPolicy", "DeleteUserPolicy") == []
    assert world.audits("iam.write", target_key=key) == []
    assert world.iam.list_user_policies(UserName="bob")["PolicyNames"] == ["big-foreign"]
    assert _inline(world, "bob", "big-foreign") == big

    world.sync(target_key=world.target("billing-inline", "U0ALICE01"))
    assert world.state(alice) == ACTIVE
    assert world.iam.list_user_policies(UserName="alice")["PolicyNames"] == [INLINE_POLICY_NAME]


@pytest.mark.parametrize("how", ["after-revoke", "limit-failure"])
def test_sync_of_an_inline_target_with_nothing_to_do_writes_nothing(world: World, how: str) -> None:
    key = world.target("billing-inline", "U0BOB0001")
    if how == "after-revoke":
        grant_id = world.grant("U0BOB0001", "billing-inline", timedelta(minutes=20))
        world.sync(target_key=key)
        world.revoke(grant_id)
        assert world.sync(target_key=key).wrote  # the policy is deleted
        expected_writes = 2  # the put, then the delete
    else:
        _big_foreign_policy(world, "bob")
        world.grant("U0BOB0001", "billing-inline")
        expected_writes = 0
        assert not world.sync(target_key=key).wrote  # the grant failed: nothing to write
    writes = len(world.recorder.writes())
    report = world.sync(target_key=key)  # the policy is absent and nothing is wanted: a no-op
    assert not report.wrote
    assert len(world.recorder.writes()) == writes
    assert len(world.audits("iam.write", target_key=key)) == expected_writes
