"""A pending request is decided by its deadline, not by whether the sweeper has run; one person's pending
requests are capped (each one pings approvers). On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.core.rules import Reason, Vote
from service.core.states import RequestState
from service.operations.context import Refused
from service.operations.decide_request import decide_request
from service.store.models import AccessRequest
from tests.integration.helpers_sync import World, make_world, raw_catalog

ALICE, BOB = "U0ALICE01", "U0BOB0001"


@pytest.fixture
def world(db_url: str, moto_reset: str) -> Iterator[World]:
    w = make_world(db_url, raw_catalog(request_timeout="2h", max_pending_per_person=3))
    yield w
    w.close()


def _state(world: World, request_id: int) -> str:
    with world.ctx.store() as session:
        row = session.get(AccessRequest, request_id)
        assert row is not None
        return row.state


def test_a_request_past_its_deadline_cannot_be_approved_though_the_sweeper_lags(world: World) -> None:
    request_id = world.request(ALICE, "ops-admin")
    world.clock.advance(hours=2, seconds=1)  # past request_timeout; no sweep has run
    with pytest.raises(Refused) as refused:
        decide_request(world.ctx, request_id=request_id, approver="U0APPR01", vote=Vote.APPROVE)
    assert refused.value.reason is Reason.REQUEST_EXPIRED
    assert _state(world, request_id) == RequestState.TIMED_OUT.value
    assert world.audits("grant.created") == []
    assert [e.request_id for e in world.audits("request.timed_out")] == [request_id]
    assert ("request.decided", {"request_id": request_id}) in world.dispatch.notes
    # The sweeper, arriving late, finds nothing left to do for it.
    assert request_id not in world.sweep().timed_out


def test_a_request_just_inside_its_deadline_is_approved(world: World) -> None:
    request_id = world.request(ALICE, "ops-admin")
    world.clock.advance(hours=1, minutes=59)
    decided = decide_request(world.ctx, request_id=request_id, approver="U0APPR01", vote=Vote.APPROVE)
    assert decided.grant_id is not None


def test_one_person_may_have_only_so_many_requests_waiting(world: World) -> None:
    first = [world.request(ALICE, "ops-admin") for _ in range(3)]
    with pytest.raises(Refused) as refused:
        world.request(ALICE, "ops-admin")
    assert refused.value.reason is Reason.TOO_MANY_PENDING
    assert "3 requests waiting" in str(refused.value)
    world.request(BOB, "ops-admin")  # another person is not affected
    # A decision frees a place.
    decide_request(world.ctx, request_id=first[0], approver="U0APPR01", vote=Vote.DENY)
    world.request(ALICE, "ops-admin")
