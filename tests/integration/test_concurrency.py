"""Races, on SQLite and PostgreSQL: many grants and revokes on one role with syncs under real Redis locks,
approvers clicking at once, approve against deny. Every transition is a compare-and-set, so each race
has exactly one winner and IAM ends up matching the database.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import event, func, select

from service.core.rules import Outcome, Reason, Vote
from service.core.states import GrantState, RequestState
from service.locks import RedisLocks
from service.operations.context import Refused
from service.operations.decide_request import Decided, decide_request
from service.store.models import AccessRequest, Approval, Grant
from tests.integration.helpers_sync import World, foreign, make_world, owned, raw_catalog

CROWD = [f"U0C0000{i:02d}" for i in range(1, 21)]
A1, A2, A3 = "U0APPR01", "U0APPR02", "U0APPR03"
ROUNDS = 10


@pytest.fixture
def world(db_url: str, moto_reset: str, redis_url: str) -> Iterator[World]:
    client = redis.Redis.from_url(redis_url)
    w = make_world(db_url, raw_catalog("concurrency.yaml"), locks=RedisLocks(client, timeout=30, wait=60))
    yield w
    w.close()
    client.close()


def _race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls at the same moment from one thread each; each call's result or exception."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def _refusals(results: list[Any]) -> list[Reason]:
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, Refused)]
    assert unexpected == [], unexpected  # no IntegrityError, no deadlock, no lock timeout
    return [r.reason for r in results if isinstance(r, Refused)]


def _outcomes(results: list[Any]) -> Counter[Outcome]:
    return Counter(r.outcome for r in results if isinstance(r, Decided))


def _vote(world: World, request_id: int, approver: str, vote: Vote = Vote.APPROVE) -> Callable[[], Decided]:
    return lambda: decide_request(world.ctx, request_id=request_id, approver=approver, vote=vote)


def _request_facts(world: World, request_id: int) -> tuple[str, int, int]:
    """(request state, grants for it, approval rows for it)."""
    with world.ctx.store() as session:
        state = session.get(AccessRequest, request_id).state  # type: ignore[union-attr]
        grants = session.scalar(select(func.count()).select_from(Grant).where(Grant.request_id == request_id))
        votes = session.scalar(select(func.count()).select_from(Approval).where(Approval.request_id == request_id))
    return state, int(grants or 0), int(votes or 0)


def test_twenty_concurrent_grants_and_revokes_on_one_role(world: World) -> None:
    key = world.target("shared-admin", CROWD[0])
    seeded_foreign = foreign(world.trust("shared-admin"))
    stop, background_errors, background_syncs = threading.Event(), [], itertools.count()

    def reconciler() -> None:  # what the periodic reconcile does, from several workers at once
        while not stop.is_set():
            try:
                world.sync(target_key=key)
                next(background_syncs)
            except Exception as exc:
                background_errors.append(exc)
            stop.wait(0.01)

    def grant_one(i_user: tuple[int, str]) -> int:
        i, user = i_user
        grant_id = world.grant(user, "shared-admin", timedelta(hours=1), approver=(A1, A2)[i % 2])
        world.sync(target_key=key)  # what the worker woken by this approval does
        return grant_id

    def revoke_one(grant_and_actor: tuple[int, str]) -> Exception | None:
        grant_id, actor = grant_and_actor
        try:
            world.revoke(grant_id, actor)
        except Refused as exc:
            return exc
        world.sync(target_key=key)
        return None

    reconcilers = [threading.Thread(target=reconciler) for _ in range(3)]
    for t in reconcilers:
        t.start()
    try:
        with ThreadPoolExecutor(20) as pool:
            grants = list(pool.map(grant_one, enumerate(CROWD)))
        assert len(set(grants)) == 20
        assert {world.state(g) for g in grants} == {GrantState.ACTIVE.value}
        assert len(owned(world.trust("shared-admin"))) == 20

        revoked, kept = grants[::2], grants[1::2]
        # each revoked grant twice at once: the requester's "I'm done" and an approver's revoke
        attempts = [(g, world.row(g).requester) for g in revoked] + [(g, A2) for g in revoked]
        with ThreadPoolExecutor(20) as pool:
            refusals = [r for r in pool.map(revoke_one, attempts) if r is not None]
    finally:
        stop.set()
        for t in reconcilers:
            t.join(60)
    assert background_errors == []
    assert next(background_syncs) > 0
    assert len(refusals) == 10 and {r.reason for r in refusals} == {Reason.NOT_REVOCABLE}  # type: ignore[union-attr]

    # No settling sync: the syncs that followed each change already converged.
    doc = world.trust("shared-admin")
    assert sorted(s["Principal"]["AWS"] for s in owned(doc)) == sorted(world.row(g).principal_arn for g in kept)
    assert len({s["Sid"] for s in owned(doc)}) == 10
    assert foreign(doc) == seeded_foreign
    assert {world.state(g) for g in kept} == {GrantState.ACTIVE.value}
    assert {world.state(g) for g in revoked} == {GrantState.REVOKED.value}
    assert sorted(e.grant_id for e in world.audits("grant.revoke_requested")) == sorted(revoked)
    assert sorted(e.grant_id for e in world.audits("grant.revoked")) == sorted(revoked)
    assert sorted(e.grant_id for e in world.audits("grant.active")) == sorted(grants)
    assert not world.sync(target_key=key).wrote


def test_quorum_race_makes_exactly_one_decision(world: World) -> None:
    for _ in range(ROUNDS):
        request_id = world.request("U0REQ0001", "quorum")
        # three approvers at once, and the first one double-clicks
        results = _race([_vote(world, request_id, a) for a in (A1, A2, A3, A1)])
        refusals = _refusals(results)
        assert _outcomes(results) == Counter({Outcome.RECORDED: 1, Outcome.APPROVED: 1}), results
        assert set(refusals) <= {Reason.NOT_PENDING, Reason.ALREADY_VOTED} and len(refusals) == 2
        assert _request_facts(world, request_id) == (RequestState.APPROVED.value, 1, 2)
        assert len(world.audits("request.approved", request_id=request_id)) == 1
        assert len(world.audits("grant.created", request_id=request_id)) == 1
        approved = next(r for r in results if isinstance(r, Decided) and r.outcome is Outcome.APPROVED)
        assert approved.grant_id is not None and approved.approvals == 2


def test_double_click_of_one_approver_counts_once(world: World) -> None:
    for _ in range(ROUNDS):
        request_id = world.request("U0REQ0001", "quorum")
        results = _race([_vote(world, request_id, A1) for _ in range(3)])
        assert _refusals(results) == [Reason.ALREADY_VOTED] * 2
        assert _outcomes(results) == Counter({Outcome.RECORDED: 1})
        assert _request_facts(world, request_id) == (RequestState.PENDING.value, 0, 1)
        # the second distinct approver completes the quorum
        assert _vote(world, request_id, A2)().outcome is Outcome.APPROVED
        assert _request_facts(world, request_id) == (RequestState.APPROVED.value, 1, 2)


def test_approve_against_deny_makes_exactly_one_decision(world: World) -> None:
    winners: Counter[Outcome] = Counter()
    for _ in range(ROUNDS):
        request_id = world.request("U0REQ0001", "single")
        results = _race([_vote(world, request_id, A1, Vote.APPROVE), _vote(world, request_id, A2, Vote.DENY),
                         _vote(world, request_id, A3, Vote.APPROVE)])
        assert _refusals(results) == [Reason.NOT_PENDING] * 2
        outcomes = _outcomes(results)
        assert sum(outcomes.values()) == 1
        [winner] = outcomes
        winners[winner] += 1
        state, grants, votes = _request_facts(world, request_id)
        assert votes == 1
        if winner is Outcome.APPROVED:
            assert (state, grants) == (RequestState.APPROVED.value, 1)
        else:
            assert winner is Outcome.DENIED and (state, grants) == (RequestState.DENIED.value, 0)
        decided = world.audits("request.approved", request_id=request_id) + world.audits(
            "request.denied", request_id=request_id)
        assert len(decided) == 1
    assert sum(winners.values()) == ROUNDS


def test_revoke_racing_the_sync_that_activates_the_grant(world: World) -> None:
    """"I'm done" clicked while the worker is activating the grant: the revoke must not be refused.

    A hook on the test's engine holds the revoke between reading the grant and its compare-and-set
    until the sync has committed (or for 1 s, if the sync cannot commit first), so the race is certain.
    """
    key = world.target("shared-admin", CROWD[0])
    grant_id = world.grant(CROWD[0], "shared-admin")
    in_revoke, revoke_read, sync_done = threading.local(), threading.Event(), threading.Event()

    def hold_revoke(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if getattr(in_revoke, "on", False) and statement.lstrip().upper().startswith("UPDATE GRANTS"):
            revoke_read.set()
            sync_done.wait(1.0)

    def revoke() -> None:
        in_revoke.on = True
        world.revoke(grant_id)

    def sync() -> None:
        assert revoke_read.wait(10)
        try:
            world.sync(target_key=key)
        finally:
            sync_done.set()

    event.listen(world.engine, "before_cursor_execute", hold_revoke)
    try:
        results = _race([revoke, sync])
    finally:
        event.remove(world.engine, "before_cursor_execute", hold_revoke)
    assert results == [None, None]
    world.sync(target_key=key)
    assert world.state(grant_id) == GrantState.REVOKED.value
    assert owned(world.trust("shared-admin")) == []


def test_first_approval_racing_the_first_sync_of_a_target(world: World) -> None:
    """The periodic reconcile syncs a catalogued role no grant has touched (no targets row yet) while the
    first approval on it marks the target dirty: both create the targets row, neither may fail."""
    key = world.target("shared-admin", CROWD[0])
    request_id = world.request(CROWD[0], "shared-admin")
    in_sync, sync_inserting, approved = threading.local(), threading.Event(), threading.Event()

    def hold_sync(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if getattr(in_sync, "on", False) and statement.lstrip().upper().startswith("INSERT INTO TARGETS"):
            sync_inserting.set()
            approved.wait(1.0)

    def sync() -> None:
        in_sync.on = True
        world.sync(target_key=key)

    def approve() -> Decided:
        assert sync_inserting.wait(10)
        try:
            return _vote(world, request_id, A1)()
        finally:
            approved.set()

    event.listen(world.engine, "before_cursor_execute", hold_sync)
    try:
        results = _race([sync, approve])
    finally:
        event.remove(world.engine, "before_cursor_execute", hold_sync)
    _refusals(results)
    assert results[0] is None and results[1].outcome is Outcome.APPROVED
    world.sync(target_key=key)
    assert world.state(results[1].grant_id) == GrantState.ACTIVE.value
