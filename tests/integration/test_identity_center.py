"""The identity_center strategy against moto server (sso-admin and identitystore over HTTP), on SQLite and
PostgreSQL: one USER account assignment per person with a live grant, made and removed by sync."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest

from service.catalog import parse_catalog
from service.core.rules import Reason
from service.core.states import GrantState
from service.operations.context import Refused
from tests.integration.helpers_sync import ACCOUNT, World, make_world, raw_catalog

ACTIVE, EXPIRED, REVOKED, FAILED = (GrantState.ACTIVE.value, GrantState.EXPIRED.value, GrantState.REVOKED.value,
                                    GrantState.FAILED.value)
STORE = "d-0123456789"  # moto makes an identity store on first use
PERMISSION_SET = "Developer"
ROLE = "dev-ic"
SAM, TESS, GHOST = "U0SSO0001", "U0SSO0002", "U0SSO0003"
USERS = {SAM: "sam@example.com", TESS: "tess@example.com", GHOST: "ghost@example.com"}


@dataclass
class Center:
    """What an administrator sees in IAM Identity Center (inspection clients: not Keyturn's)."""

    sso: Any
    store: Any
    instance_arn: str
    ps_arn: str
    user_ids: dict[str, str]  # Slack id -> identity-store user id (GHOST has none)

    def _key(self, principal_id: str, principal_type: str = "USER") -> dict[str, str]:
        return {"InstanceArn": self.instance_arn, "TargetId": ACCOUNT, "TargetType": "AWS_ACCOUNT",
                "PermissionSetArn": self.ps_arn, "PrincipalType": principal_type, "PrincipalId": principal_id}

    def assignments(self) -> set[tuple[str, str]]:
        out = self.sso.list_account_assignments(InstanceArn=self.instance_arn, AccountId=ACCOUNT,
                                                PermissionSetArn=self.ps_arn)["AccountAssignments"]
        return {(a["PrincipalType"], a["PrincipalId"]) for a in out}

    def users(self, *slack_ids: str) -> set[tuple[str, str]]:
        return {("USER", self.user_ids[s]) for s in slack_ids}

    def assign(self, principal_id: str, principal_type: str = "USER") -> None:
        self.sso.create_account_assignment(**self._key(principal_id, principal_type))

    def unassign(self, principal_id: str) -> None:
        self.sso.delete_account_assignment(**self._key(principal_id))


def _catalog(instance_arn: str) -> dict[str, Any]:
    raw = raw_catalog(identity_center={"instance_arn": instance_arn, "identity_store_id": STORE,
                                       "region": "us-east-1"})
    raw["identities"] = [
        {"slack": slack, "kind": "sso_user", "user_name": name,
         "permission_sets": [{"account": "moto", "permission_set": PERMISSION_SET}]}
        for slack, name in USERS.items()]
    raw["roles"].append({"id": ROLE, "name": "Developer through Identity Center", "account": "moto",
                         "strategy": "identity_center", "permission_set": PERMISSION_SET,
                         "approvers": ["U0APPR01"], "max_duration": "4h"})
    return raw


@pytest.fixture
def center(moto_reset: str) -> Center:
    sso, store = boto3.client("sso-admin"), boto3.client("identitystore")
    instance_arn = sso.list_instances()["Instances"][0]["InstanceArn"]
    sso.create_permission_set(Name="Other", InstanceArn=instance_arn)  # found by name, not by position
    ps_arn = sso.create_permission_set(Name=PERMISSION_SET, InstanceArn=instance_arn,
                                       SessionDuration="PT1H")["PermissionSet"]["PermissionSetArn"]
    user_ids = {slack: store.create_user(IdentityStoreId=STORE, UserName=USERS[slack], DisplayName=slack,
                                         Name={"GivenName": slack, "FamilyName": "Test"})["UserId"]
                for slack in (SAM, TESS)}
    return Center(sso, store, instance_arn, ps_arn, user_ids)


@pytest.fixture
def world(db_url: str, center: Center) -> Iterator[World]:
    w = make_world(db_url, _catalog(center.instance_arn))
    yield w
    w.close()


def _sync(world: World) -> Any:
    return world.sync(target_key=world.target(ROLE, SAM))


def _expire(world: World, *grant_ids: int) -> None:
    latest = max(world.row(g).expires_at for g in grant_ids)
    world.clock.advance(seconds=(latest - world.clock()).total_seconds() + 1)
    world.sweep()


def test_target_is_the_permission_set_in_the_account(world: World) -> None:
    assert world.target(ROLE, SAM) == f"identity_center:{ACCOUNT}:{PERMISSION_SET}"
    assert world.target(ROLE, TESS) == world.target(ROLE, SAM)  # one target, one lease per person


def test_assignment_created_on_approval_and_deleted_at_expiry(world: World, center: Center) -> None:
    grant_id = world.grant(SAM, ROLE, timedelta(minutes=30))
    assert center.assignments() == set()
    report = _sync(world)
    assert report.wrote and report.activated == [grant_id]
    assert center.assignments() == center.users(SAM)
    assert world.state(grant_id) == ACTIVE
    assert world.owned_members(report.target_key) == {center.user_ids[SAM]}
    write = world.audits("iam.write", target_key=report.target_key)[-1]
    assert write.detail["added"] == [f"USER:{center.user_ids[SAM]}"]
    assert write.hash_before != write.hash_after
    assert not _sync(world).wrote  # idempotent

    _expire(world, grant_id)
    report = _sync(world)
    assert report.wrote and report.ended == [grant_id]
    assert center.assignments() == set()
    assert world.state(grant_id) == EXPIRED
    assert world.owned_members(report.target_key) == set()
    assert world.audits("iam.write", target_key=report.target_key)[-1].detail["removed"] == [
        f"USER:{center.user_ids[SAM]}"]


def test_revoke_deletes_the_assignment(world: World, center: Center) -> None:
    grant_id = world.grant(SAM, ROLE)
    _sync(world)
    assert world.revoke(grant_id)
    report = _sync(world)
    assert report.ended == [grant_id] and world.state(grant_id) == REVOKED
    assert center.assignments() == set()


def test_overlapping_grants_of_one_person_are_one_assignment(world: World, center: Center) -> None:
    long_id = world.grant(SAM, ROLE, timedelta(hours=2))
    short_id = world.grant(SAM, ROLE, timedelta(minutes=10))
    assert world.row(long_id).lease_key == world.row(short_id).lease_key == f"sso_user:{USERS[SAM]}"
    _sync(world)
    assert {world.state(long_id), world.state(short_id)} == {ACTIVE}
    assert center.assignments() == center.users(SAM)

    world.clock.advance(minutes=11)
    assert world.sweep().expiring == [short_id]
    report = _sync(world)
    assert not report.wrote  # the first grant ending does not remove the assignment the other still needs
    assert world.state(short_id) == EXPIRED and world.state(long_id) == ACTIVE
    assert center.assignments() == center.users(SAM)

    world.revoke(long_id)
    _sync(world)
    assert world.state(long_id) == REVOKED and center.assignments() == set()


def test_assignments_keyturn_did_not_make_survive(world: World, center: Center) -> None:
    center.assign(center.user_ids[TESS])  # tess had the permission set before Keyturn
    center.assign("a-group-id-0001", "GROUP")
    tess = world.grant(TESS, ROLE, timedelta(minutes=30))
    sam = world.grant(SAM, ROLE, timedelta(minutes=30))
    report = _sync(world)
    assert world.state(tess) == ACTIVE and world.state(sam) == ACTIVE
    assert world.owned_members(report.target_key) == {center.user_ids[SAM]}
    [foreign] = world.audits("assignment.foreign", target_key=report.target_key)
    assert foreign.detail["assignments"] == sorted(["GROUP:a-group-id-0001", f"USER:{center.user_ids[TESS]}"])

    _expire(world, tess, sam)
    _sync(world)
    assert world.state(tess) == EXPIRED and world.state(sam) == EXPIRED
    assert center.assignments() == {("GROUP", "a-group-id-0001"), *center.users(TESS)}
    assert not _sync(world).wrote
    assert len(world.audits("assignment.foreign")) == 1  # reported when it changes, not at every sync


def test_hand_deleted_owned_assignment_is_restored(world: World, center: Center) -> None:
    grant_id = world.grant(SAM, ROLE)
    _sync(world)
    center.unassign(center.user_ids[SAM])
    assert center.assignments() == set()

    report = _sync(world)
    assert report.wrote and center.assignments() == center.users(SAM)
    assert world.state(grant_id) == ACTIVE
    key = f"USER:{center.user_ids[SAM]}"
    last = world.audits("iam.write", target_key=report.target_key)[-1]
    assert last.detail["added"] == [key] and last.detail["restored"] == [key]
    assert world.audits("drift.repaired", target_key=report.target_key)


def test_unknown_user_fails_only_their_grant(world: World, center: Center) -> None:
    ghost = world.grant(GHOST, ROLE)
    sam = world.grant(SAM, ROLE)
    report = _sync(world)
    assert world.state(sam) == ACTIVE and center.assignments() == center.users(SAM)
    assert world.state(ghost) == FAILED and report.failed.keys() == {ghost}
    reason = world.row(ghost).failure_reason or ""
    assert "no IAM Identity Center user named ghost@example.com" in reason


def test_user_deleted_from_the_identity_store_ends_their_active_grant(world: World, center: Center) -> None:
    tess = world.grant(TESS, ROLE)
    sam = world.grant(SAM, ROLE)
    _sync(world)
    center.store.delete_user(IdentityStoreId=STORE, UserId=center.user_ids[TESS])
    report = _sync(world)
    assert world.state(tess) == REVOKED and world.state(sam) == ACTIVE
    assert report.ended == [tess]
    assert center.assignments() == center.users(SAM)  # tess's owned assignment is removed too


def test_person_no_longer_in_the_catalogue_loses_the_assignment(world: World, center: Center) -> None:
    grant_id = world.grant(SAM, ROLE)
    _sync(world)
    raw = _catalog(center.instance_arn)
    raw["identities"] = [i for i in raw["identities"] if i["slack"] != SAM]
    world.ctx.catalog = parse_catalog(raw)
    _sync(world)
    assert world.state(grant_id) == REVOKED
    assert [e.grant_id for e in world.audits("grant.unmapped")] == [grant_id]
    assert center.assignments() == set()


def test_iam_user_asking_for_an_identity_center_role_is_refused_at_filing(world: World) -> None:
    with pytest.raises(Refused) as refused:
        world.request("U0ALICE01", ROLE)
    assert refused.value.reason is Reason.UNSUPPORTED_PRINCIPAL
    assert "identity_center needs an IAM Identity Center user" in str(refused.value)
