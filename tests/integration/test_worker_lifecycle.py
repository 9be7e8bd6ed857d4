"""A grant's whole life on real processes: a Celery worker and beat on Redis, moto as IAM, and
the test filing, approving and revoking through the use cases (as the web process does).
Runs on SQLite and PostgreSQL. Every wait is a bounded poll; no timing is asserted.
"""

from __future__ import annotations

from collections import Counter

import pytest

from service.core.policy import iso_z
from tests.support.live import ACCOUNT, ALICE, ROLE_NAME, SHORT, Keyturn

pytestmark = pytest.mark.slow


def test_request_approve_activate_expire_then_revoke(keyturn_procs: Keyturn) -> None:
    kt = keyturn_procs
    seeded = kt.foreign()
    assert [s["Sid"] for s in seeded] == ["BreakGlassTeam"] and not kt.statements_for(ALICE)
    kt.start_worker(aws_url=kt.moto_url)  # straight to moto: no proxy in this path
    kt.start_beat()

    # request -> approve -> the worker writes the statement and the grant turns active
    short = kt.grant(seconds=SHORT)
    kt.wait_state(short, "active")
    [statement] = kt.statements_for(ALICE)
    expires = kt.row(short).expires_at
    assert statement["Effect"] == "Allow" and statement["Action"] == "sts:AssumeRole"
    assert statement["Principal"] == {"AWS": kt.catalog.principals[ALICE]}
    assert statement["Condition"]["DateLessThan"] == {"aws:CurrentTime": iso_z(expires)}
    assert kt.foreign() == seeded

    # the expiry: beat's sweeper marks it ending, the worker removes the statement and records it expired
    kt.wait_state(short, "expired")
    assert kt.statements_for(ALICE) == []
    assert kt.foreign() == seeded

    # "I'm done" on a long grant
    long = kt.grant(seconds=1800)
    kt.wait_state(long, "active")
    assert len(kt.statements_for(ALICE)) == 1
    kt.revoke(long)
    kt.wait_state(long, "revoked")
    assert kt.statements_for(ALICE) == []
    assert kt.foreign() == seeded
    assert kt.trust()["Statement"] == seeded
    kt.wait_settled()  # the follow-up session cut (a deny in the role's inline policy) is written too

    # the audit log accounts for every step, in order, for each grant
    short_row, long_row = kt.row(short), kt.row(long)
    for row in (short_row, long_row):
        actions = [e.action for e in kt.audits(request_id=row.request_id)]
        assert actions[:5] == ["request.filed", "vote.approve", "request.approved", "grant.created",
                               "grant.active"], actions
    short_actions = [e.action for e in kt.audits(grant_id=short)]
    assert short_actions == ["grant.created", "grant.active", "grant.expiring", "grant.expired"], short_actions
    long_actions = [e.action for e in kt.audits(grant_id=long)]
    assert long_actions == ["grant.created", "grant.active", "grant.revoke_requested", "grant.revoked"]
    assert kt.audits(grant_id=short, action="grant.expiring")[0].actor == "keyturn"
    assert kt.audits(grant_id=long, action="grant.revoke_requested")[0].actor == ALICE

    writes = kt.audits(action="iam.write", target_key=kt.target_key())
    # add + remove for each grant: four writes of the trust policy, each with before/after hashes
    assert len(writes) == 4, [(w.detail, w.hash_before, w.hash_after) for w in writes]
    assert all(w.hash_before and w.hash_after and w.hash_before != w.hash_after for w in writes)
    assert [w.detail.get("grants_activated") or w.detail.get("grants_ended") for w in writes] == [
        [short], [short], [long], [long]]
    assert writes[-1].hash_after == writes[0].hash_before  # back to exactly the seeded document
    counts = Counter(e.action for e in kt.audits())
    assert counts["grant.active"] == 2 and counts["sync.error"] == 0
    # ending a grant cuts its sessions: an expected write, never counted as drift repair
    assert counts["drift.repaired"] == 0, [(e.target_key, e.detail) for e in kt.audits(action="drift.repaired")]
    assert kt.audits(action="iam.write", target_key=f"role_sessions:{ACCOUNT}:{ROLE_NAME}")
