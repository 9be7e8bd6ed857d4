"""sync(target) on role trust policies against moto over HTTP, on SQLite and PostgreSQL.

Each test drives the use cases in-process (request, approve, revoke, sweep) and then `sync_target`,
and checks the trust policy IAM holds, the grant states and the audit log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from service.core.policy import (
    OWNED_SID_PREFIX,
    Lease,
    iso_z,
    owned_sid,
    size_without_whitespace,
    trust_statement,
)
from service.core.states import GrantState
from service.store.models import Target
from tests.integration.helpers_sync import World, foreign, make_world, owned, pad_trust_to, raw_catalog

LIMIT = 1536  # the catalogue setting in small_world, below the 2,048 default
ACTIVE, REVOKED, EXPIRED, FAILED = (s.value for s in (GrantState.ACTIVE, GrantState.REVOKED, GrantState.EXPIRED,
                                                      GrantState.FAILED))


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.close()


def _only_owned(world: World, role_id: str = "ops-admin") -> dict:
    statements = owned(world.trust(role_id))
    assert len(statements) == 1, statements
    return statements[0]


def test_approve_sync_revoke_sync(world: World) -> None:
    seeded_foreign = foreign(world.trust())
    assert len(seeded_foreign) == 1 and not owned(world.trust())
    grant_id = world.grant("U0ALICE01", "ops-admin")
    key = world.target("ops-admin")
    assert world.state(grant_id) == GrantState.PROVISIONING.value
    assert key in world.dispatch.syncs  # the approval woke the target's sync

    report = world.sync()
    assert report.wrote and report.activated == [grant_id]
    statement = _only_owned(world)
    expires = world.row(grant_id).expires_at
    assert statement["Sid"].startswith(OWNED_SID_PREFIX)
    assert statement["Principal"] == {"AWS": world.arn("U0ALICE01")}
    assert statement["Action"] == "sts:AssumeRole" and statement["Effect"] == "Allow"
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(expires)}
    assert statement["Condition"]["DateLessThan"]["aws:CurrentTime"].endswith("Z")
    assert "Bool" not in statement["Condition"]  # this role does not require MFA
    assert foreign(world.trust()) == seeded_foreign
    assert world.state(grant_id) == ACTIVE
    writes = world.audits("iam.write", target_key=key)
    assert len(writes) == 1
    assert writes[0].hash_before and writes[0].hash_after and writes[0].hash_before != writes[0].hash_after
    assert writes[0].detail["added"] == [statement["Sid"]]

    world.dispatch.syncs.clear()
    world.revoke(grant_id)
    assert world.state(grant_id) == GrantState.ENDING.value
    assert world.dispatch.syncs == [key]
    report = world.sync()
    assert report.wrote and report.ended == [grant_id]
    assert owned(world.trust()) == []
    assert foreign(world.trust()) == seeded_foreign
    assert world.state(grant_id) == REVOKED
    assert [e.grant_id for e in world.audits("grant.revoked")] == [grant_id]
    assert world.audits("iam.write")[-1].detail["removed"] == [statement["Sid"]]


def test_mfa_role_adds_the_mfa_condition(world: World) -> None:
    grant_id = world.grant("U0BOB0001", "ops-mfa")
    world.sync("ops-mfa", user="U0BOB0001")
    statement = _only_owned(world, "ops-mfa")
    assert statement["Principal"] == {"AWS": world.arn("U0BOB0001")}
    assert statement["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(world.row(grant_id).expires_at)}
    # the role without MFA does not get the condition
    world.grant("U0BOB0001", "ops-admin")
    world.sync("ops-admin", user="U0BOB0001")
    assert "Bool" not in _only_owned(world, "ops-admin")["Condition"]


def test_short_grant_expires_on_the_real_clock(world: World) -> None:
    grant_id = world.grant("U0ALICE01", "ops-admin", timedelta(seconds=2))
    world.sync()
    assert world.state(grant_id) == ACTIVE and len(owned(world.trust())) == 1
    time.sleep(max(0.0, (world.row(grant_id).expires_at - world.clock()).total_seconds()) + 0.1)
    assert world.sweep().expiring == [grant_id]
    assert world.state(grant_id) == GrantState.ENDING.value
    report = world.sync()
    assert report.wrote and report.ended == [grant_id]
    assert world.state(grant_id) == EXPIRED
    assert owned(world.trust()) == [] and len(foreign(world.trust())) == 1


@pytest.mark.parametrize("sweep_first", [True, False], ids=["sweep-then-sync", "sync-only"])
def test_grant_expired_before_any_sync_is_never_written(world: World, sweep_first: bool) -> None:
    before = world.trust()
    grant_id = world.grant("U0ALICE01", "ops-admin", timedelta(seconds=60))
    world.clock.advance(seconds=61)
    if sweep_first:
        assert world.sweep().expiring == [grant_id]
    report = world.sync()
    assert not report.wrote and report.activated == []
    assert world.recorder.writes() == []  # no UpdateAssumeRolePolicy at all
    arn = world.arn("U0ALICE01")
    assert all(arn not in json.dumps(call.params) for call in world.recorder.calls)
    assert world.trust() == before
    assert world.state(grant_id) == EXPIRED
    assert world.audits("grant.active") == [] and world.audits("iam.write") == []
    [expiring] = world.audits("grant.expiring")  # whichever of sweep and sync saw the expiry says so
    assert expiring.detail.get("never_written") is True


def test_overlapping_grants_keep_the_latest_expiry(world: World) -> None:
    long_id = world.grant("U0ALICE01", "ops-admin", timedelta(hours=2))
    short_id = world.grant("U0ALICE01", "ops-admin", timedelta(seconds=10))
    world.sync()
    assert {world.state(long_id), world.state(short_id)} == {ACTIVE}
    long_expiry = iso_z(world.row(long_id).expires_at)
    assert _only_owned(world)["Condition"]["DateLessThan"]["aws:CurrentTime"] == long_expiry

    world.revoke(short_id)
    world.sync()
    assert world.state(short_id) == REVOKED and world.state(long_id) == ACTIVE
    assert _only_owned(world)["Condition"]["DateLessThan"]["aws:CurrentTime"] == long_expiry

    again = world.grant("U0ALICE01", "ops-admin", timedelta(seconds=10))
    world.sync()
    world.clock.advance(seconds=11)
    assert world.sweep().expiring == [again]
    world.sync()
    assert world.state(again) == EXPIRED and world.state(long_id) == ACTIVE
    assert _only_owned(world)["Principal"] == {"AWS": world.arn("U0ALICE01")}
    assert _only_owned(world)["Condition"]["DateLessThan"]["aws:CurrentTime"] == long_expiry

    world.revoke(long_id)
    world.sync()
    assert world.state(long_id) == REVOKED and owned(world.trust()) == []


def test_drift_hand_deleted_statement_is_restored(world: World) -> None:
    grant_id = world.grant("U0ALICE01", "ops-admin")
    world.sync()
    statement = _only_owned(world)
    world.set_trust("ops-admin", {"Version": "2012-10-17", "Statement": foreign(world.trust())})
    assert owned(world.trust()) == []

    report = world.sync()
    assert report.wrote
    assert _only_owned(world) == statement
    assert world.state(grant_id) == ACTIVE
    last = world.audits("iam.write")[-1]
    assert last.detail["added"] == [statement["Sid"]] and last.detail["restored"] == [statement["Sid"]]
    assert last.hash_before != last.hash_after


def test_stray_owned_statement_is_removed_and_foreign_ones_survive(world: World) -> None:
    grant_id = world.grant("U0ALICE01", "ops-admin")
    world.sync()
    mine = _only_owned(world)
    partner = {"Sid": "PartnerAudit", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::999999999999:root"},
               "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"sts:ExternalId": "abc"}}}
    stray = {"Sid": owned_sid(world.arn("U0BOB0001")), "Effect": "Allow",
             "Principal": {"AWS": world.arn("U0BOB0001")}, "Action": "sts:AssumeRole"}
    world.set_trust("ops-admin", {"Version": "2012-10-17",
                                  "Statement": [*foreign(world.trust()), stray, partner, mine]})
    expected_foreign = foreign(world.trust())
    assert [s["Sid"] for s in expected_foreign] == ["BreakGlassTeam", "PartnerAudit"]

    report = world.sync()
    assert report.wrote
    doc = world.trust()
    assert foreign(doc) == expected_foreign  # same statements, same order
    assert owned(doc) == [mine]
    assert world.arn("U0BOB0001") not in json.dumps(doc)
    assert world.audits("iam.write")[-1].detail["removed"] == [stray["Sid"]]
    assert world.state(grant_id) == ACTIVE


@pytest.fixture
def small_world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url, raw_catalog(trust_policy_max_chars=LIMIT))
    yield w
    w.close()


def _statement_chars(world: World, grant_id: int) -> int:
    """What adding this grant's statement costs: its own characters (built as sync builds it) plus a comma."""
    g = world.row(grant_id)
    statement = trust_statement(Lease(g.lease_key, g.expires_at, g.require_mfa, g.session_name))
    return size_without_whitespace({"Statement": [statement]}) - size_without_whitespace({"Statement": []}) + 1


def test_trust_policy_size_limit_fails_only_the_grant_that_does_not_fit(small_world: World) -> None:
    world = small_world
    assert world.gw.trust_policy_max_chars == LIMIT  # the catalogue setting reaches the adapter
    alice = world.grant("U0ALICE01", "ops-admin")
    world.sync()
    assert world.state(alice) == ACTIVE
    bob = world.grant("U0BOB0001", "ops-admin")
    carol = world.grant("U0CAROL01", "ops-admin")
    # Room for bob's statement, one character short of carol's as well.
    pad_trust_to(world, "ops-admin", LIMIT + 1 - _statement_chars(world, bob) - _statement_chars(world, carol))
    report = world.sync()
    assert report.wrote and report.activated == [bob] and list(report.failed) == [carol]
    assert world.state(bob) == ACTIVE and world.state(carol) == FAILED and world.state(alice) == ACTIVE
    assert f"limit is {LIMIT}" in (world.row(carol).failure_reason or "")
    assert size_without_whitespace(world.trust()) <= LIMIT
    assert {s["Principal"]["AWS"] for s in owned(world.trust())} == {world.arn("U0ALICE01"), world.arn("U0BOB0001")}
    assert [e.grant_id for e in world.audits("grant.failed")] == [carol]

    # Now the next grant is one character too many: it fails and the policy is left exactly as it was.
    dave = world.grant("U0DAVE001", "ops-admin")
    pad_trust_to(world, "ops-admin", LIMIT + 1 - _statement_chars(world, dave))
    before, writes = world.trust(), len(world.recorder.writes())
    report = world.sync()
    assert not report.wrote and list(report.failed) == [dave]
    assert world.state(dave) == FAILED and "limit" in (world.row(dave).failure_reason or "")
    assert json.dumps(world.trust()) == json.dumps(before)
    assert len(world.recorder.writes()) == writes
    assert world.state(alice) == ACTIVE and world.state(bob) == ACTIVE


def test_deleted_role_fails_new_grants_and_revoke_still_ends(world: World) -> None:
    alice = world.grant("U0ALICE01", "ops-admin")
    world.sync()
    assert world.state(alice) == ACTIVE
    bob = world.grant("U0BOB0001", "ops-admin")
    world.delete_role("OpsAdmin")

    report = world.sync()  # no exception: a target that is gone is an answer, not an error
    assert report.gone and not report.wrote and list(report.failed) == [bob]
    assert world.state(bob) == FAILED and "does not exist" in (world.row(bob).failure_reason or "")
    with world.ctx.store() as session:
        target = session.get(Target, world.target("ops-admin"))
        assert target is not None and "does not exist" in (target.last_error or "")

    world.revoke(alice)
    report = world.sync()
    assert report.gone and report.ended == [alice]
    assert world.state(alice) == REVOKED


def test_sync_twice_writes_once(world: World) -> None:
    world.grant("U0ALICE01", "ops-admin")
    world.grant("U0BOB0001", "ops-admin")
    first = world.sync()
    second = world.sync()
    assert first.wrote and not second.wrote
    assert second.hash_before == second.hash_after == first.hash_after
    assert len(world.recorder.writes("UpdateAssumeRolePolicy")) == 1  # both grants in one write
    assert len(world.audits("iam.write", target_key=world.target("ops-admin"))) == 1
    assert len(owned(world.trust())) == 2
