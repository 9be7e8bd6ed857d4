"""One principal IAM refuses fails only its own grant (issue 12 item 7), on SQLite and PostgreSQL.

IAM refuses a whole trust policy naming a user that does not exist; moto does not, so Keyturn's IAM calls
go through `StrictIamProxy`, which answers as IAM does. alice exists; ghost is in the catalogue, but his
IAM user was deleted (or never existed): his grant fails with IAM's reason, alice's is written and later
revoked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from service.core.states import GrantState
from tests.integration.helpers_sync import ACCOUNT, World, foreign, make_world, owned, raw_catalog
from tests.support.strict_iam import StrictIamProxy

ALICE, GHOST, BOB = "U0ALICE01", "U0GHOST01", "U0BOB0001"
GHOST_ARN = f"arn:aws:iam::{ACCOUNT}:user/ghost"
REASON = f"principal {GHOST_ARN} is not accepted by IAM (Invalid principal)"


def _trust(principal: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Probe", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}]})


@pytest.fixture
def direct(moto_reset: str) -> Any:
    """Straight to moto, past the proxy."""
    return boto3.client("iam", endpoint_url=moto_reset, region_name="us-east-1")


def _world(db_url: str, moto_reset: str, monkeypatch: pytest.MonkeyPatch, direct: Any,
           name_principal: bool = True) -> Iterator[tuple[World, StrictIamProxy]]:
    proxy = StrictIamProxy(moto_reset, name_principal=name_principal)
    proxy.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)  # every client Keyturn builds goes through it
    raw = raw_catalog()
    raw["principals"][GHOST] = GHOST_ARN
    world = make_world(db_url, raw)
    direct.delete_user(UserName="ghost")  # approved for someone IAM no longer has
    try:
        yield world, proxy
    finally:
        world.close()
        proxy.stop()


@pytest.fixture
def strict(db_url: str, moto_reset: str, monkeypatch: pytest.MonkeyPatch, direct: Any
           ) -> Iterator[tuple[World, StrictIamProxy]]:
    yield from _world(db_url, moto_reset, monkeypatch, direct)


@pytest.fixture
def unnamed(db_url: str, moto_reset: str, monkeypatch: pytest.MonkeyPatch, direct: Any
            ) -> Iterator[tuple[World, StrictIamProxy]]:
    yield from _world(db_url, moto_reset, monkeypatch, direct, name_principal=False)


def _principals(world: World) -> list[Any]:
    return [s["Principal"]["AWS"] for s in owned(world.trust())]


# ---- the proxy itself -----------------------------------------------------------------------------

def test_proxy_refuses_a_principal_that_does_not_exist_and_accepts_one_that_does(moto_reset: str, direct: Any
                                                                                  ) -> None:
    direct.create_user(UserName="alice")
    direct.create_role(RoleName="Probe", AssumeRolePolicyDocument=_trust(f"arn:aws:iam::{ACCOUNT}:root"))
    proxy = StrictIamProxy(moto_reset)
    proxy.start()
    try:
        iam = boto3.client("iam", endpoint_url=proxy.url, region_name="us-east-1")
        iam.update_assume_role_policy(RoleName="Probe", PolicyDocument=_trust(f"arn:aws:iam::{ACCOUNT}:user/alice"))
        for bad in (GHOST_ARN, "arn:aws:iam::111111111111:user/alice", f"arn:aws:iam::{ACCOUNT}:role/Nope"):
            with pytest.raises(ClientError) as err:
                iam.update_assume_role_policy(RoleName="Probe", PolicyDocument=_trust(bad))
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            assert err.value.response["Error"]["Code"] == "MalformedPolicyDocument"
            assert err.value.response["Error"]["Message"] == f'Invalid principal in policy: "AWS":"{bad}"'
        with pytest.raises(ClientError, match="MalformedPolicyDocument"):
            iam.create_role(RoleName="Ghostly", AssumeRolePolicyDocument=_trust(GHOST_ARN))
        assert proxy.refused == [GHOST_ARN, "arn:aws:iam::111111111111:user/alice",
                                 f"arn:aws:iam::{ACCOUNT}:role/Nope", GHOST_ARN]
    finally:
        proxy.stop()
    stored = direct.get_role(RoleName="Probe")["Role"]["AssumeRolePolicyDocument"]
    assert stored["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}
    assert "Ghostly" not in {r["RoleName"] for r in direct.list_roles()["Roles"]}


# ---- sync ---------------------------------------------------------------------------------------

def test_a_refused_principal_fails_only_its_grant_and_revocations_still_go_through(
        strict: tuple[World, StrictIamProxy]) -> None:
    world, proxy = strict
    alice = world.grant(ALICE, "ops-admin")
    ghosts = [world.grant(GHOST, "ops-admin"), world.grant(GHOST, "ops-admin")]  # one lease key, two grants

    report = world.sync()
    assert report.activated == [alice]
    assert report.failed == {g: REASON for g in ghosts}
    assert GHOST_ARN in proxy.refused
    assert _principals(world) == [world.arn(ALICE)]
    assert len(foreign(world.trust())) == 1  # the foreign statement untouched
    assert world.state(alice) == GrantState.ACTIVE.value
    for g in ghosts:
        assert world.state(g) == GrantState.FAILED.value
        assert world.row(g).failure_reason == REASON
    assert {a.grant_id for a in world.audits("grant.failed")} == set(ghosts)

    world.revoke(alice)
    report = world.sync()
    assert report.ended == [alice]
    assert owned(world.trust()) == []
    assert world.state(alice) == GrantState.REVOKED.value


def test_an_active_grant_whose_user_is_deleted_ends_and_the_next_grant_is_written(
        strict: tuple[World, StrictIamProxy], direct: Any) -> None:
    world, _ = strict
    direct.create_user(UserName="ghost")
    ghost = world.grant(GHOST, "ops-admin")
    assert world.sync().activated == [ghost]
    direct.delete_user(UserName="ghost")  # moto keeps the ARN in the trust policy; IAM would refuse it

    bob = world.grant(BOB, "ops-admin")
    report = world.sync()
    assert report.activated == [bob] and report.ended == [ghost]
    assert _principals(world) == [world.arn(BOB)]
    row = world.row(ghost)
    assert row.state == GrantState.REVOKED.value and row.failure_reason == REASON


def test_without_the_arn_in_the_message_the_refused_statement_is_found_by_trying(
        unnamed: tuple[World, StrictIamProxy]) -> None:
    world, _ = unnamed
    people = [ALICE, BOB, "U0CAROL01", "U0DAVE001"]
    grants = {p: world.grant(p, "ops-admin") for p in people}
    ghost = world.grant(GHOST, "ops-admin")

    report = world.sync()
    assert sorted(report.activated) == sorted(grants.values())
    assert report.failed == {ghost: REASON}
    assert sorted(_principals(world)) == sorted(world.arn(p) for p in people)


def test_a_foreign_statement_naming_a_refused_principal_is_not_ours_to_fix(
        strict: tuple[World, StrictIamProxy], direct: Any) -> None:
    world, _ = strict
    doc = world.trust()
    doc["Statement"].append({"Sid": "TheirsGhost", "Effect": "Allow", "Principal": {"AWS": GHOST_ARN},
                             "Action": "sts:AssumeRole"})
    direct.update_assume_role_policy(RoleName="OpsAdmin", PolicyDocument=json.dumps(doc))
    alice = world.grant(ALICE, "ops-admin")

    with pytest.raises(ClientError, match="MalformedPolicyDocument"):
        world.sync()
    assert world.state(alice) == GrantState.PROVISIONING.value
    assert owned(world.trust()) == []
