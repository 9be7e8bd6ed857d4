"""The console's grant detail shows what IAM held for the grant at the last verified read-back: its owned
statement (trust policy, inline policy), its group membership, and the person's session cut, each equal to
what moto returns, and nothing of another person's; after the end, the access is gone and the cut moved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from service.api.scope import scope_of
from service.console.queries import grant_detail
from service.core.policy import owned_sid
from tests.integration.helpers_sync import World, make_world, owned


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.close()


def shown(items: list[str]) -> list[Any]:
    return [json.loads(i) for i in items]


def test_trust_policy_statement_and_session_cut_as_read_back(world: World) -> None:
    alice = world.grant("U0ALICE01", "ops-admin")
    bob = world.grant("U0BOB0001", "ops-admin")
    world.sync("ops-admin")
    assert {world.state(alice), world.state(bob)} == {"active"}
    role = world.catalog.roles["ops-admin"].role_name
    grant = world.row(alice)
    detail = grant_detail(world.ctx, scope_of(world.ctx, "U0ALICE01"), alice)
    [mine] = [s for s in owned(world.trust()) if s["Sid"] == owned_sid(grant.lease_key)]
    assert shown(detail.in_iam) == [mine]  # hers exactly, and not bob's (two owned statements in IAM)
    assert len(owned(world.trust())) == 2
    [cut] = shown(detail.cut_in_iam)
    assert cut in world.cuts(role) and cut["Effect"] == "Deny"
    assert cut["Condition"]["StringEquals"]["aws:userid"].endswith(":alice")
    assert detail.cut is not None and detail.cut.last_synced_at is not None

    world.revoke(alice)
    world.sync("ops-admin")
    assert world.state(alice) == "revoked"
    detail = grant_detail(world.ctx, scope_of(world.ctx, "U0ALICE01"), alice)
    assert detail.in_iam == []  # her statement is gone from the verified document
    [moved] = shown(detail.cut_in_iam)
    assert moved in world.cuts(role) and moved != cut  # the cut moved to her end
    bobs = grant_detail(world.ctx, scope_of(world.ctx, "U0BOB0001"), bob)
    assert len(bobs.in_iam) == 1 and ":bob" in json.dumps(shown(bobs.cut_in_iam))


def test_group_membership_and_inline_policy_as_read_back(world: World) -> None:
    member = world.grant("U0ALICE01", "ro-group")
    world.sync("ro-group")
    inline = world.grant("U0ALICE01", "billing-inline")
    world.sync("billing-inline")
    assert world.state(member) == world.state(inline) == "active"
    scope = scope_of(world.ctx, "U0ALICE01")
    assert grant_detail(world.ctx, scope, member).in_iam == ["member: alice"]
    [statement] = shown(grant_detail(world.ctx, scope, inline).in_iam)
    name = world.catalog.roles["billing-inline"]
    docs = world.iam.list_user_policies(UserName="alice")["PolicyNames"]
    live = [s for p in docs for s in owned(world.iam.get_user_policy(UserName="alice", PolicyName=p)
                                           ["PolicyDocument"])]
    assert statement in live and name.role_name in json.dumps(statement)

    world.revoke(member)
    world.sync("ro-group")
    assert world.state(member) == "revoked" and "alice" not in world.group_members(
        world.catalog.roles["ro-group"].group or "")
    assert grant_detail(world.ctx, scope, member).in_iam == []
