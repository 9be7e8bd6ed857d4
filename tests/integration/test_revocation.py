"""Revocation you can bet production on: cutting live sessions, drift repair, and revokes that fail.

In-process like test_sync_trust_policy (moto server over HTTP, SQLite and PostgreSQL). The failure tests
reach IAM through the fault proxy and run the real Celery task `keyturn.sync_target` eagerly (its retries
run at once, no broker), so the configured retry count and `record_sync_failure` are the production ones.
moto does not evaluate policy conditions: the session deny and the trust condition are checked by their
exact structure, and the deny's `aws:userid` against the id STS really gives a session of that name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import celery._state
import pytest
from click.testing import CliRunner
from flask import Flask
from prometheus_client import CollectorRegistry

from service.api.metrics import KeyturnCollector
from service.aws.clients import AwsClients
from service.aws.documents import SESSIONS_POLICY_NAME
from service.aws.errors import SyncConflict
from service.aws.gateway import AwsGateway
from service.cli import main as cli
from service.core.policy import document_hash, owned_sid
from service.core.states import GrantState
from service.core.targets import sessions_target
from service.operations.context import Refused
from service.operations.revoke_grant import force_cleanup
from service.runtime import Runtime
from service.settings import Settings
from service.store.models import Target
from tests.integration.helpers_sync import ACCOUNT, CATALOGS, World, foreign, make_world, owned
from tests.support import iam_eval
from tests.support.fault_proxy import FaultProxy
from workers.celery_app import celery_init_app

ALICE, BOB, ERIN, ADMIN = "U0ALICE01", "U0BOB0001", "U0ERIN001", "U0ADMIN01"
ROLE, ROLE_NAME = "ops-admin", "OpsAdmin"
UPDATE, GET = "UpdateAssumeRolePolicy", "GetRole"
ACTIVE, ENDING, REVOKED, EXPIRED = (s.value for s in (GrantState.ACTIVE, GrantState.ENDING, GrantState.REVOKED,
                                                      GrantState.EXPIRED))
STUCK = GrantState.REVOCATION_FAILED.value
RETRIES = 2  # KEYTURN_SYNC_MAX_RETRIES for the failure tests: 1 attempt + 2 retries


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url)
    yield w
    w.close()


def sessions_key(world: World) -> str:
    role = world.catalog.roles[ROLE]
    return sessions_target(role.account, role.role_name).key


def sessions_policy(world: World, name: str = SESSIONS_POLICY_NAME) -> dict[str, Any] | None:
    """The role's inline policy `name` as IAM holds it (None if there is none)."""
    try:
        doc = world.iam.get_role_policy(RoleName=ROLE_NAME, PolicyName=name)["PolicyDocument"]
    except world.iam.exceptions.NoSuchEntityException:
        return None
    return dict(json.loads(doc) if isinstance(doc, str) else doc)


def statement_of(world: World, user: str) -> list[dict[str, Any]]:
    return [s for s in owned(world.trust()) if s["Sid"] == owned_sid(world.arn(user))]


def metrics(world: World) -> Callable[..., float]:
    """A scrape of the production collector over this world's database: name, labels -> value."""
    registry = CollectorRegistry()
    registry.register(KeyturnCollector(world.ctx.store, None))
    return lambda name, **labels: float(registry.get_sample_value(name, labels) or 0.0)


def test_a_revocation_whose_wake_up_was_lost_is_resent_in_the_first_lane(world: World) -> None:
    alice = world.grant(ALICE, ROLE)
    world.sync()
    world.sync(target_key=sessions_key(world))  # its follow-up: nothing else is left dirty
    world.revoke(alice)  # committed as ending; say the broker lost the wake-up it sent
    world.dispatch.syncs.clear()
    world.dispatch.urgent_syncs.clear()
    world.clock.advance(seconds=5)
    assert world.sweep().resent == [] and world.dispatch.syncs == []  # not yet taken for lost
    world.clock.advance(seconds=6)
    assert world.sweep().resent == [world.target(ROLE)]
    assert world.dispatch.urgent_syncs == [world.target(ROLE)]  # ahead of Slack and the grants' syncs
    world.sync()
    assert world.state(alice) == REVOKED and statement_of(world, ALICE) == []


def test_after_an_outage_the_sweep_wakes_expired_grants_targets_before_other_lost_ones(world: World) -> None:
    alice = world.grant(ALICE, ROLE, timedelta(minutes=10))
    assert world.sync().follow_up == [sessions_key(world)]  # the lift of alice's cut: left dirty, say lost
    erin = world.grant(ERIN, "ops-mfa")
    world.sync(target_key=world.target("ops-mfa"))
    world.revoke(erin)  # an earlier revocation, on another role, whose wake-up was lost too
    world.dispatch.urgent_syncs.clear()
    world.clock.advance(minutes=10, seconds=1)
    report = world.sweep()
    assert report.expiring == [alice] and sessions_key(world) in report.resent
    mfa_sessions = sessions_target(world.catalog.roles["ops-mfa"].account, "OpsMfa").key
    # In key order "role_sessions:…" came before both "trust_policy:…" removals.
    assert sessions_key(world) < world.target(ROLE) < world.target("ops-mfa")
    assert world.dispatch.urgent_syncs == [world.target(ROLE), world.target("ops-mfa"),  # access ending
                                           sessions_key(world), mfa_sessions]  # then the lost lifts
    world.sync()
    world.sync(target_key=world.target("ops-mfa"))
    assert world.state(alice) == EXPIRED and world.state(erin) == REVOKED


# ---- 1. live sessions ------------------------------------------------------------------------------
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def session_allowed(world: World, name: str, *, issued_at: Any, at: Any) -> bool:
    """May an open session of the role named `name`, issued at `issued_at`, act at `at`? Judged by the IAM
    evaluator over the role's policies as moto holds them (the role itself may do anything)."""
    role = world.iam.get_role(RoleName=ROLE_NAME)["Role"]
    request = iam_eval.session_calls(role["Arn"], role["RoleId"], name, issued_at=issued_at, at=at)
    return iam_eval.session_may([ALLOW_ALL, *world.role_policies(ROLE_NAME)], request).allowed


@pytest.mark.parametrize("end", ["expiry", "done", "admin"])
def test_the_cut_is_armed_when_access_starts_and_ends_only_that_persons_earlier_sessions(
    world: World, end: str
) -> None:
    world.iam.update_role(RoleName=ROLE_NAME, MaxSessionDuration=7200)  # the role's, not a 1h default
    role = world.iam.get_role(RoleName=ROLE_NAME)["Role"]
    operator = {"Sid": "OperatorBlock", "Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}
    world.iam.put_role_policy(RoleName=ROLE_NAME, PolicyName=SESSIONS_POLICY_NAME,
                              PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [operator]}))
    world.iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="unrelated",
                              PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [operator]}))
    # erin's earlier grant already ended ("I'm done"): her earlier sessions are cut from then on
    erin = world.grant(ERIN, ROLE)
    world.sync()
    erin_start = world.clock()
    world.revoke(erin)
    assert world.sync().follow_up == [sessions_key(world)]
    erin_end = world.row(erin).end_requested_at
    assert not session_allowed(world, "erin", issued_at=erin_start, at=world.clock())
    assert session_allowed(world, "erin", issued_at=erin_end + timedelta(seconds=1), at=world.clock())  # a later grant

    alice = world.grant(ALICE, ROLE, timedelta(minutes=10))
    bob = world.grant(BOB, ROLE, timedelta(hours=4))
    world.sync()
    [alice_trust] = statement_of(world, ALICE)
    assert alice_trust["Condition"]["StringEquals"] == {"sts:RoleSessionName": "alice"}
    expires = world.row(alice).expires_at
    opened = world.clock()
    # Armed: with no worker doing anything more, IAM itself ends alice's open session at her expiry second.
    assert session_allowed(world, "alice", issued_at=opened, at=expires - timedelta(seconds=1))
    assert not session_allowed(world, "alice", issued_at=opened, at=expires)
    assert session_allowed(world, "bob", issued_at=opened, at=expires)  # another person: untouched
    world.dispatch.syncs.clear()
    world.dispatch.urgent_syncs.clear()
    if end == "expiry":
        world.clock.advance(minutes=10, seconds=1)
        assert world.sweep().expiring == [alice]
    else:
        world.revoke(alice, actor=ADMIN if end == "admin" else None)
    report = world.sync()
    assert report.ended == [alice] and report.follow_up == [sessions_key(world)]
    assert world.dispatch.urgent_syncs[0] == world.target(ROLE)  # ending access goes ahead of other work
    row = world.row(alice)
    assert row.state == (EXPIRED if end == "expiry" else REVOKED)
    assert row.ended_by == {"expiry": None, "done": ALICE, "admin": ADMIN}[end]
    ended_at = row.expires_at if end == "expiry" else row.end_requested_at
    assert ended_at is not None
    # The cut was moved (or, at the expiry, already was) to the end before the grant was reported ended.
    assert not session_allowed(world, "alice", issued_at=opened, at=ended_at)
    later = ended_at + timedelta(seconds=1)
    assert session_allowed(world, "alice", issued_at=later, at=later + timedelta(seconds=1))
    assert session_allowed(world, "bob", issued_at=opened, at=ended_at)
    assert sessions_policy(world) is not None and foreign(sessions_policy(world)) == [operator]
    # the id STS stamps on a session named after alice is exactly what the cut matches
    session = world.gw.clients.sts().assume_role(RoleArn=role["Arn"], RoleSessionName="alice")
    assert session["AssumedRoleUser"]["AssumedRoleId"] == f"{role['RoleId']}:alice"
    assert any(f"{role['RoleId']}:alice" in json.dumps(c) for c in world.cuts(ROLE_NAME))
    assert statement_of(world, ALICE) == [] and world.state(bob) == ACTIVE and len(statement_of(world, BOB)) == 1
    assert (sessions_policy(world, "unrelated") or {})["Statement"] == [operator]

    world.clock.advance(seconds=3601)  # past 1h, within the role's 2h: still cut
    world.sync(target_key=sessions_key(world))
    assert not session_allowed(world, "alice", issued_at=opened, at=world.clock())
    world.clock.advance(seconds=7200)  # every session issued before either end has run out
    world.sync(target_key=sessions_key(world))
    assert [c for c in world.cuts(ROLE_NAME) if ":bob" not in json.dumps(c)] == []  # only bob's armed cut
    assert foreign(sessions_policy(world)) == [operator]
    assert world.state(bob) == ACTIVE


# ---- 2. drift ------------------------------------------------------------------------------------
def test_owned_statement_with_unique_id_principal_is_removed_audited_and_counted(world: World) -> None:
    alice = world.grant(ALICE, ROLE)
    world.sync()
    [mine] = owned(world.trust())
    scrape = metrics(world)
    drift_before, writes_before = scrape("keyturn_drift_repairs_total"), scrape("keyturn_iam_writes_total")
    # IAM rewrote a deleted principal into its unique id; a foreign statement looks the same and must stay
    ghost = {"Sid": owned_sid(f"arn:aws:iam::{ACCOUNT}:user/ghost"), "Effect": "Allow",
             "Principal": {"AWS": "AIDAXXXXXXXXXXXXXXXXX"}, "Action": "sts:AssumeRole"}
    legacy = {"Sid": "LegacyVendor", "Effect": "Allow", "Principal": {"AWS": "AIDAYYYYYYYYYYYYYYYYY"},
              "Action": "sts:AssumeRole"}
    world.set_trust(ROLE, {"Version": "2012-10-17", "Statement": [*foreign(world.trust()), ghost, legacy, mine]})
    tampered = world.trust()
    expected_foreign = foreign(tampered)
    assert legacy in expected_foreign

    report = world.sync()
    doc = world.trust()
    assert report.wrote and owned(doc) == [mine] and foreign(doc) == expected_foreign
    assert "AIDAXXXXXXXXXXXXXXXXX" not in json.dumps(doc) and world.state(alice) == ACTIVE
    [drift] = world.audits("drift.repaired")
    assert (drift.hash_before, drift.hash_after) == (document_hash(tampered), document_hash(doc))
    assert (drift.detail or {})["removed"] == [ghost["Sid"]] and drift.target_key == world.target(ROLE)
    write = world.audits("iam.write")[-1]
    assert (write.hash_before, write.hash_after) == (drift.hash_before, drift.hash_after)
    scrape = metrics(world)
    assert scrape("keyturn_drift_repairs_total") == drift_before + 1
    assert scrape("keyturn_iam_writes_total") == writes_before + 1
    assert not world.sync().wrote  # repaired once, then stable
    assert len(world.audits("drift.repaired")) == 1


def test_active_grant_whose_principal_became_a_unique_id_is_cleaned_and_ended(world: World) -> None:
    alice, bob = world.grant(ALICE, ROLE), world.grant(BOB, ROLE)
    world.sync()
    [bobs] = statement_of(world, BOB)
    [alices] = statement_of(world, ALICE)
    deleted = {**alices, "Principal": {"AWS": "AIDAXXXXXXXXXXXXXXXXX"}}  # alice's IAM user was deleted
    world.set_trust(ROLE, {"Version": "2012-10-17", "Statement": [*foreign(world.trust()), deleted, bobs]})
    seeded = foreign(world.trust())

    report = world.sync()
    assert report.wrote and report.ended == [alice]
    assert owned(world.trust()) == [bobs] and foreign(world.trust()) == seeded
    assert world.state(alice) == REVOKED and "no longer exists" in (world.row(alice).failure_reason or "")
    [revoked] = world.audits("grant.revoked", grant_id=alice)
    assert "no longer exists" in (revoked.detail or {})["reason"]
    assert world.state(bob) == ACTIVE


# ---- 3. failure states ---------------------------------------------------------------------------
@dataclass
class Faulty:
    world: World
    proxy: FaultProxy
    task: Any  # keyturn.sync_target on a Celery app whose Flask app holds this world's runtime

    def run(self) -> Any:
        """What a worker does with one wake-up for the role's trust policy, retries included."""
        return self.task.apply(args=[self.world.target(ROLE)]).get()


@pytest.fixture
def faulty(world: World, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> Faulty:
    monkeypatch.setenv("AWS_ENDPOINT_URL", fault_proxy.url)  # Keyturn's clients only; world.iam is direct
    world.gw = AwsGateway(AwsClients(), trust_policy_max_chars=world.catalog.trust_policy_max_chars)
    world.gw.clients.iam(ACCOUNT)
    monkeypatch.setattr(celery._state, "default_app", celery._state.default_app)
    monkeypatch.setattr(celery._state._tls, "current_app", celery._state._tls.current_app)
    settings = Settings(database_url=world.url, sync_max_retries=RETRIES)
    app = Flask("keyturn-revocation-test")
    app.extensions["keyturn"] = Runtime(settings=settings, catalog=world.catalog, ctx=world.ctx, aws=world.gw,
                                        locks=world.locks, redis=None, engine=world.engine)  # type: ignore[arg-type]
    return Faulty(world, fault_proxy, celery_init_app(app, settings).tasks["keyturn.sync_target"])


def cli_grants(world: World, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name, value in {"DATABASE_URL": world.url, "KEYTURN_CATALOG": str(CATALOGS / "sync.yaml"),
                        "REDIS_URL": "redis://127.0.0.1:1/0", "SLACK_BOT_TOKEN": ""}.items():
        monkeypatch.setenv(name, value)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        result = CliRunner().invoke(cli, ["grants"], catch_exceptions=False)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_revoke_denied_by_aws_fails_loudly_and_forced_clean_up_finishes_it(
    faulty: Faulty, monkeypatch: pytest.MonkeyPatch
) -> None:
    world, proxy = faulty.world, faulty.proxy
    seeded = foreign(world.trust())
    alice, bob = world.grant(ALICE, ROLE), world.grant(BOB, ROLE)
    faulty.run()
    assert world.state(alice) == world.state(bob) == ACTIVE
    errors_before = metrics(world)("keyturn_aws_errors_total")

    proxy.error(UPDATE, "AccessDenied", 403, times=None)
    world.revoke(alice)
    faulty.run()
    assert proxy.count(UPDATE, "error-AccessDenied") == RETRIES + 1  # tried, retried, then gave up
    assert world.state(alice) == STUCK and world.state(bob) == ACTIVE
    assert len(statement_of(world, ALICE)) == 1  # honest: IAM still holds it (its DateLessThan still binds)
    errors = world.audits("sync.error", target_key=world.target(ROLE))
    assert len(errors) == RETRIES + 1 and [(e.detail or {}).get("final") for e in errors] == [None] * RETRIES + [True]
    [stuck] = world.audits("grant.revocation_failed")
    assert stuck.grant_id == alice and "AccessDenied" in (stuck.detail or {})["reason"]
    assert world.audits("grant.revoked") == []
    assert [n for n in world.dispatch.notes if n[0] == "grant.revocation_failed"] == [
        ("grant.revocation_failed", {"grant_id": alice})]
    scrape = metrics(world)
    assert scrape("keyturn_aws_errors_total") == errors_before + RETRIES + 1
    assert scrape("keyturn_grants", state=STUCK) == 1.0
    rows = {line.split()[0]: line for line in cli_grants(world, monkeypatch)[1:]}
    assert rows[str(alice)].split()[3] == STUCK and rows[str(alice)].endswith("<- needs attention")
    assert rows[str(bob)].split()[3] == ACTIVE and "attention" not in rows[str(bob)]

    with pytest.raises(Refused):
        force_cleanup(world.ctx, grant_id=alice, actor_id=ALICE)  # only an admin
    force_cleanup(world.ctx, grant_id=alice, actor_id=ADMIN)
    assert world.dispatch.syncs[-1] == world.target(ROLE)
    faulty.run()  # the fault is still there: still stuck, told once, never marked revoked
    assert world.state(alice) == STUCK and len(statement_of(world, ALICE)) == 1
    assert len([n for n in world.dispatch.notes if n[0] == "grant.revocation_failed"]) == 1

    proxy.clear()
    force_cleanup(world.ctx, grant_id=alice, actor_id=ADMIN)
    faulty.run()
    assert world.state(alice) == REVOKED and statement_of(world, ALICE) == []
    assert world.state(bob) == ACTIVE and len(statement_of(world, BOB)) == 1 and foreign(world.trust()) == seeded
    assert [e.actor for e in world.audits("grant.cleanup_forced", grant_id=alice)] == [ADMIN, ADMIN]
    assert [e.grant_id for e in world.audits("grant.revoked")] == [alice]
    assert ("grant.ended", {"grant_id": alice}) in world.dispatch.notes
    assert sessions_key(world) in world.dispatch.syncs  # and her open sessions get cut
    with world.ctx.store() as session:
        target = session.get(Target, world.target(ROLE))
        assert target is not None and target.failures == 0 and target.last_error is None
    assert metrics(world)("keyturn_grants", state=STUCK) == 0.0


def test_revoke_is_not_recorded_until_read_back_shows_the_statement_gone(faulty: Faulty) -> None:
    world, proxy = faulty.world, faulty.proxy
    alice = world.grant(ALICE, ROLE)
    world.sync()
    assert world.state(alice) == ACTIVE
    proxy.stale_read(UPDATE, GET, times=3)  # every read-back of this sync (3 attempts) sees the old policy
    world.revoke(alice)
    with pytest.raises(SyncConflict):
        world.sync()
    assert proxy.count(UPDATE, "forwarded") == 2 and proxy.count(GET, "stale") == 3
    assert statement_of(world, ALICE) == []  # the write did land in IAM ...
    assert world.state(alice) == ENDING  # ... but unverified, so it is not recorded as revoked
    assert world.audits("grant.revoked") == [] and world.row(alice).ended_at is None

    report = world.sync()  # reads now show the truth: verified with no further write
    assert not report.wrote and report.ended == [alice]
    assert world.state(alice) == REVOKED and proxy.count(UPDATE) == 2
