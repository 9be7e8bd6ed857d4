"""More faults on real processes, each ending with IAM exactly what the database wants and nothing lost:

- a worker killed AFTER IAM applied its write, before it recorded anything (the proxy holds the answer);
- Redis FLUSHALLed (not restarted) around an expiry: queued wake-ups, locks, flags and Celery's own keys gone;
- a worker restarted after an expiry with no beat running: its start-up sweep ends the grant;
- two beats at once: the expiry is still handled once;
- bursts of 500s on the writes;
- stale reads right after a write (IAM's eventual consistency): never taken as success.

After each, `IamTruth` compares every target's IAM document with the desired state computed from the
database by the sync code's own functions, and checks that the audit log's chain of document hashes per
target has no hole. Waits are bounded polls; no timing is asserted.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis

from service.queues import DEFAULT_QUEUE, IAM_QUEUE
from service.sync.target import sync_target
from service.task_publisher import TaskPublisher
from tests.support.iam_truth import IamTruth
from tests.support.live import ALICE, SHORT, WAIT, Keyturn

pytestmark = pytest.mark.slow
UPDATE, GET = "UpdateAssumeRolePolicy", "GetRole"
VERIFY_READS = int(inspect.signature(sync_target).parameters["verify_attempts"].default)


@pytest.fixture
def truth(keyturn_procs: Keyturn) -> Iterator[IamTruth]:
    yield IamTruth(keyturn_procs)


def converged(kt: Keyturn, truth: IamTruth) -> None:
    kt.wait_settled()
    truth.assert_matches_db()
    truth.assert_chain()
    assert kt.foreign() == truth.base[kt.target_key()].foreign


def actions(kt: Keyturn, grant: int) -> list[str]:
    return [e.action for e in kt.audits(grant_id=grant)]


def test_worker_killed_after_the_write_before_recording_it(keyturn_procs: Keyturn, truth: IamTruth) -> None:
    kt = keyturn_procs
    kt.start_beat()
    doomed = kt.start_worker()
    truth.baseline()
    key = kt.target_key()
    kt.proxy.hold_response(UPDATE, seconds=120)  # IAM applies it; the worker never hears back
    grant = kt.grant(seconds=1800)
    kt.wait_until("IAM to apply the worker's write", lambda: kt.proxy.count(UPDATE, "forwarded+held"))
    assert len(kt.statements_for(ALICE)) == 1  # the write is done in IAM…
    doomed.kill()
    kt.proxy.release()
    assert kt.state(grant) == "provisioning"  # …and nothing of it was recorded
    assert not [e for e in kt.audits(target_key=key) if e.id > truth.base_event and e.action.startswith("iam.")]
    kt.start_worker()
    kt.wait_state(grant, "active")
    converged(kt, truth)
    # The write nobody recorded is accounted for by the next sync, as the step from the baseline to now.
    [changed] = [e for e in kt.audits(action="iam.changed", target_key=key)]
    assert (changed.hash_before, changed.hash_after) == (truth.base[key].hash, truth.read(key).hash)
    kt.revoke(grant)
    kt.wait_state(grant, "revoked")
    converged(kt, truth)
    assert kt.statements_for(ALICE) == []
    assert actions(kt, grant) == ["grant.created", "grant.active", "grant.revoke_requested", "grant.revoked"]


def test_redis_flushed_around_an_expiry_still_removes_access(keyturn_procs: Keyturn, truth: IamTruth) -> None:
    kt = keyturn_procs
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    grant = kt.grant(seconds=SHORT + 3)
    kt.wait_state(grant, "active")
    expires = kt.row(grant).expires_at
    broker = redis.Redis.from_url(kt.env["REDIS_URL"])
    try:
        # Just before the expiry, then just after (the ending's wake-up may be queued): all keys gone,
        # Celery's queue bindings included. The processes keep running against the same, emptied server.
        kt.wait_until("the last second before the expiry", lambda: kt.ctx.now() > expires - timedelta(seconds=1))
        assert broker.flushall() and broker.dbsize() == 0
        kt.wait_until("the expiry to pass", lambda: kt.ctx.now() > expires + timedelta(seconds=0.3))
        assert broker.flushall()
    finally:
        broker.close()
    kt.wait_state(grant, "expired", timeout=2 * WAIT)
    converged(kt, truth)
    assert kt.statements_for(ALICE) == []
    assert actions(kt, grant) == ["grant.created", "grant.active", "grant.expiring", "grant.expired"]
    # And the system still works after the flush: a new grant goes through end to end.
    again = kt.grant(seconds=1800)
    kt.wait_state(again, "active", timeout=2 * WAIT)
    converged(kt, truth)


def active_grant_then_worker_killed(kt: Keyturn, truth: IamTruth) -> int:
    """A short grant made active by a worker that is then SIGKILLed, with no beat: the grant outlives it."""
    worker = kt.start_worker()
    truth.baseline()
    grant = kt.grant(seconds=SHORT)
    kt.wait_state(grant, "active")
    worker.kill()
    return grant


def test_a_restarted_worker_sweeps_at_once_without_beat(keyturn_procs: Keyturn, truth: IamTruth) -> None:
    """No beat at all: only the worker's own start-up sweep can end a grant that expired while it was down."""
    kt = keyturn_procs
    grant = active_grant_then_worker_killed(kt, truth)
    kt.wait_past_expiry(grant, margin=1.0)
    assert kt.state(grant) == "active"  # nobody has ended it
    kt.start_worker()
    kt.wait_state(grant, "expired")
    converged(kt, truth)
    assert kt.statements_for(ALICE) == []
    assert actions(kt, grant) == ["grant.created", "grant.active", "grant.expiring", "grant.expired"]


def test_after_an_outage_the_expiry_goes_ahead_of_a_backlog_of_iam_and_slack_work(keyturn_procs: Keyturn,
                                                                                 truth: IamTruth) -> None:
    """Ending access has its own queue, polled before Slack, notifications and the other syncs: an overdue
    expiry does not wait behind what piled up while the worker was down (or a flood of clicks)."""
    kt = keyturn_procs
    grant = active_grant_then_worker_killed(kt, truth)
    broker = redis.Redis.from_url(kt.env["REDIS_URL"])
    publisher = TaskPublisher(broker)
    # Each task some milliseconds, many seconds in all. The IAM backlog syncs the role's session-cut policy,
    # not its trust policy: a sync of the trust policy would itself end the expired grant.
    sessions = kt.target_key().replace("trust_policy:", "role_sessions:", 1)
    backlogs = {
        IAM_QUEUE: [publisher.message("keyturn.sync_target", [sessions], "sync") for _ in range(300)],
        DEFAULT_QUEUE: [publisher.message("keyturn.slack_interaction", ["list", {"user": "U0NOBODY"}], "list")
                        for _ in range(2000)],
    }
    for queue, messages in backlogs.items():
        broker.lpush(queue, *[json.dumps(m) for m in messages])
    kt.wait_past_expiry(grant, margin=1.0)
    kt.start_worker()
    kt.wait_state(grant, "expired")
    left = {queue: int(broker.llen(queue)) for queue in backlogs}
    assert all(left[q] > len(m) // 2 for q, m in backlogs.items()), f"left when the grant ended: {left}"
    assert kt.statements_for(ALICE) == []
    broker.delete(*backlogs)  # the rest would only repeat a finished sync and answer nobody
    converged(kt, truth)


def test_two_beats_at_once_handle_an_expiry_once(keyturn_procs: Keyturn, truth: IamTruth) -> None:
    kt = keyturn_procs
    kt.start_worker()
    beats = [kt.start_beat(), kt.start_beat(schedule="beat-schedule-2")]
    truth.baseline()
    grant = kt.grant(seconds=SHORT)
    kt.wait_state(grant, "active")
    kt.wait_state(grant, "expired")
    converged(kt, truth)
    assert kt.statements_for(ALICE) == []
    # Exactly one ending, however many sweepers saw the expiry.
    assert actions(kt, grant) == ["grant.created", "grant.active", "grant.expiring", "grant.expired"]
    for beat in beats:  # both really were sweeping
        assert beat.log_text().count("Sending due task keyturn.sweep") >= 2, beat.tail()


def test_bursts_of_500s_on_the_writes_converge(keyturn_procs: Keyturn, truth: IamTruth) -> None:
    kt = keyturn_procs
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    kt.proxy.fail(UPDATE, 500, times=3)
    grant = kt.grant(seconds=1800)
    kt.wait_state(grant, "active")
    assert kt.proxy.count(UPDATE, "failed-500") == 3 and kt.proxy.count(UPDATE, "forwarded") >= 1
    converged(kt, truth)
    kt.proxy.fail(UPDATE, 500, times=3)
    kt.revoke(grant)
    kt.wait_state(grant, "revoked")
    assert kt.proxy.count(UPDATE, "failed-500") == 6
    converged(kt, truth)
    assert kt.statements_for(ALICE) == []
    assert actions(kt, grant) == ["grant.created", "grant.active", "grant.revoke_requested", "grant.revoked"]


@pytest.mark.parametrize("stale", [1, VERIFY_READS], ids=["one-stale-read", "stale-through-verify"])
@pytest.mark.parametrize("phase", ["activate", "revoke"])
def test_stale_read_after_a_write_is_never_taken_as_done(keyturn_procs: Keyturn, truth: IamTruth, phase: str,
                                                          stale: int) -> None:
    kt = keyturn_procs
    kt.start_worker()
    kt.start_beat()
    truth.baseline()
    grant = None
    if phase == "revoke":
        grant = kt.grant(seconds=1800)
        kt.wait_state(grant, "active")
    kt.proxy.stale_read(UPDATE, GET, times=stale)  # the next write's read-backs see the document before it
    if grant is None:
        grant = kt.grant(seconds=1800)
    else:
        kt.revoke(grant)
    done = "active" if phase == "activate" else "revoked"
    kt.wait_state(grant, done)
    assert kt.proxy.count(GET, "stale") == stale
    [marked] = kt.audits(grant_id=grant, action=f"grant.{done}")
    errors = [e for e in kt.audits(action="sync.error", target_key=kt.target_key()) if e.id > truth.base_event]
    if stale == VERIFY_READS:
        # Every read-back of that sync was stale: it failed, and the grant was marked only by a later sync
        # that read the write back for real.
        assert errors and errors[0].id < marked.id, [(e.id, e.detail) for e in errors]
        assert "does not match" in str(errors[0].detail)
    else:
        assert errors == []  # one stale read is waited out inside the sync's own read-back
    converged(kt, truth)
    assert (kt.statements_for(ALICE) != []) == (phase == "activate")
