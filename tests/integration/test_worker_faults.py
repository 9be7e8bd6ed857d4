"""Faults on real processes: a worker SIGKILLed mid-sync, beat down across an expiry, a lost IAM
response, a throttling burst, an expiry that passed before any worker ran, Redis restarted.

The database is the truth and the broker only carries wake-ups, so each case must converge: the
access IAM holds ends up exactly what the database says. Workers reach AWS through the fault proxy;
the test inspects IAM straight on moto. Waits are bounded polls; no timing is asserted.
"""

from __future__ import annotations

import pytest

from service.core.policy import split
from tests.support.live import ALICE, SHORT, WAIT, Keyturn
from tests.support.redis_server import RedisProcess

pytestmark = pytest.mark.slow
UPDATE, GET = "UpdateAssumeRolePolicy", "GetRole"
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def assert_exactly_alice(kt: Keyturn, seeded: list[dict]) -> None:
    """IAM holds the seeded foreign statement, untouched, and one owned statement: alice's."""
    foreign, owned = split(kt.trust())
    assert foreign == seeded
    assert owned == kt.statements_for(ALICE) and len(owned) == 1, owned


@pytest.mark.parametrize("held", [UPDATE, GET], ids=["killed-during-write", "killed-before-write"])
def test_worker_killed_mid_sync_and_restarted_converges(keyturn_procs: Keyturn, held: str) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    kt.start_beat()
    doomed = kt.start_worker()
    kt.proxy.hold(held, seconds=5)
    grant = kt.grant(seconds=1800)
    # the worker's call is in flight, held by the proxy
    kt.wait_until(f"the worker's {held} to reach the proxy", lambda: kt.proxy.count(held))
    doomed.kill()
    assert kt.state(grant) == "provisioning"  # it died before recording anything
    if held == GET:
        assert kt.proxy.count(UPDATE) == 0  # and before writing
    kt.start_worker()
    # Its task is unacknowledged in Redis (acks_late) but the visibility timeout is long: the
    # sweeper re-sends the wake-up for the target still dirty, and the new worker finishes the job.
    kt.wait_state(grant, "active")
    assert_exactly_alice(kt, seeded)
    assert [e.action for e in kt.audits(grant_id=grant)] == ["grant.created", "grant.active"]


def test_beat_down_across_an_expiry_then_restarted(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    kt.start_worker()
    beat = kt.start_beat()
    grant = kt.grant(seconds=SHORT)
    kt.wait_state(grant, "active")
    beat.stop()
    kt.wait_past_expiry(grant, margin=1.5)
    # Precondition of the scenario: with no sweeper, nothing has ended it yet. IAM itself already
    # refuses it: the statement's DateLessThan is in the past.
    assert kt.state(grant) == "active"
    [statement] = kt.statements_for(ALICE)
    assert "DateLessThan" in statement["Condition"]
    kt.start_beat()  # same schedule file, as after a deploy
    kt.wait_state(grant, "expired")
    assert kt.statements_for(ALICE) == []
    assert kt.trust()["Statement"] == seeded
    assert [e.action for e in kt.audits(grant_id=grant)][-2:] == ["grant.expiring", "grant.expired"]


def test_write_whose_response_was_lost_converges(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    kt.start_worker()
    kt.start_beat()
    kt.proxy.drop_response(UPDATE)  # IAM applies the write; the worker never hears back
    grant = kt.grant(seconds=1800)
    kt.wait_state(grant, "active")
    assert kt.proxy.count(UPDATE, "dropped") == 1 and kt.proxy.count(UPDATE) >= 2
    assert_exactly_alice(kt, seeded)
    kt.revoke(grant)
    kt.wait_state(grant, "revoked")
    assert kt.trust()["Statement"] == seeded


def test_throttling_burst_on_the_write_converges(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    kt.start_worker()
    kt.start_beat()
    kt.proxy.throttle(UPDATE, times=3)
    grant = kt.grant(seconds=1800)
    kt.wait_state(grant, "active")
    assert kt.proxy.count(UPDATE, "throttled") == 3
    assert kt.proxy.count(UPDATE, "forwarded") >= 1
    assert_exactly_alice(kt, seeded)


def test_grant_expired_before_any_worker_ran_is_never_written(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    grant = kt.grant(seconds=1)  # approved with no worker running: the wake-up waits in Redis
    kt.wait_past_expiry(grant, margin=1.0)
    kt.start_worker()
    kt.start_beat()
    kt.wait_state(grant, "expired")
    kt.wait_settled()
    principal = kt.catalog.principals[ALICE]
    assert kt.proxy.count(GET) >= 1  # the worker did look at the role, through the proxy
    for body in kt.proxy.bodies(UPDATE):
        assert principal not in body["PolicyDocument"][0], body
    assert kt.trust()["Statement"] == seeded
    actions = [e.action for e in kt.audits(grant_id=grant)]
    assert "grant.active" not in actions and actions[-2:] == ["grant.expiring", "grant.expired"], actions
    [expiring] = kt.audits(grant_id=grant, action="grant.expiring")
    assert expiring.detail.get("never_written") is True


@SQLITE_ONLY
def test_redis_restarted_at_an_expiry_still_removes_access(keyturn_procs: Keyturn,
                                                          private_redis: RedisProcess) -> None:
    kt = keyturn_procs
    assert kt.env["REDIS_URL"] == private_redis.url(0), "the broker must be this test's own Redis"
    seeded = kt.foreign()
    kt.start_worker()
    kt.start_beat()
    grant = kt.grant(seconds=SHORT)
    kt.wait_state(grant, "active")
    private_redis.kill()  # a crash: queued wake-ups, locks and flags are gone
    kt.wait_past_expiry(grant, margin=1.0)
    private_redis.start()  # empty, same port
    # Worker and beat reconnect; the sweeper re-derives the work from the database.
    kt.wait_state(grant, "expired", timeout=2 * WAIT)
    assert kt.statements_for(ALICE) == []
    assert kt.trust()["Statement"] == seeded
