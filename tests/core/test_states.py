"""Request and grant state machines: the tables, terminal states, and a property over any sequence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.states import (
    ENDING_GRANT_STATES,
    GRANT_TRANSITIONS,
    LIVE_GRANT_STATES,
    REQUEST_TRANSITIONS,
    TERMINAL_GRANT_STATES,
    EndReason,
    GrantState,
    RequestState,
    can_grant_move,
    can_request_move,
    terminal_state_for,
)

G = GrantState
R = RequestState

ALLOWED_GRANT_MOVES = {
    (G.PROVISIONING, G.ACTIVE),
    (G.PROVISIONING, G.FAILED),
    (G.PROVISIONING, G.ENDING),
    (G.PROVISIONING, G.EXPIRED),
    (G.ACTIVE, G.ENDING),
    (G.ENDING, G.EXPIRED),
    (G.ENDING, G.REVOKED),
    (G.ENDING, G.REVOCATION_FAILED),
    (G.REVOCATION_FAILED, G.EXPIRED),
    (G.REVOCATION_FAILED, G.REVOKED),
}
ALLOWED_REQUEST_MOVES = {(R.PENDING, dst) for dst in (R.APPROVED, R.DENIED, R.CANCELLED, R.TIMED_OUT)}
TERMINAL_REQUEST_STATES = [R.APPROVED, R.DENIED, R.CANCELLED, R.TIMED_OUT]


@pytest.mark.parametrize(
    ("src", "dst"), [pytest.param(s, d, id=f"{s}->{d}") for s, d in sorted(ALLOWED_GRANT_MOVES)]
)
def test_allowed_grant_moves(src: GrantState, dst: GrantState) -> None:
    assert can_grant_move(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [pytest.param(s, d, id=f"{s}->{d}") for s in G for d in G if (s, d) not in ALLOWED_GRANT_MOVES],
)
def test_every_other_grant_move_is_refused(src: GrantState, dst: GrantState) -> None:
    assert not can_grant_move(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"), [pytest.param(s, d, id=f"{s}->{d}") for s, d in sorted(ALLOWED_REQUEST_MOVES)]
)
def test_allowed_request_moves(src: RequestState, dst: RequestState) -> None:
    assert can_request_move(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [pytest.param(s, d, id=f"{s}->{d}") for s in R for d in R if (s, d) not in ALLOWED_REQUEST_MOVES],
)
def test_every_other_request_move_is_refused(src: RequestState, dst: RequestState) -> None:
    assert not can_request_move(src, dst)


@pytest.mark.parametrize("state", [pytest.param(s, id=str(s)) for s in sorted(TERMINAL_GRANT_STATES)])
def test_terminal_grant_states_have_no_exits(state: GrantState) -> None:
    assert state not in GRANT_TRANSITIONS
    assert not any(can_grant_move(state, dst) for dst in G)


@pytest.mark.parametrize("state", [pytest.param(s, id=str(s)) for s in TERMINAL_REQUEST_STATES])
def test_decided_requests_have_no_exits(state: RequestState) -> None:
    assert state not in REQUEST_TRANSITIONS
    assert not any(can_request_move(state, dst) for dst in R)


def test_grant_state_groups_partition_every_state() -> None:
    groups = [LIVE_GRANT_STATES, ENDING_GRANT_STATES, TERMINAL_GRANT_STATES]
    assert set().union(*groups) == set(G)
    assert sum(len(g) for g in groups) == len(G)


def test_every_grant_state_is_reachable_and_every_non_terminal_one_can_finish() -> None:
    reachable = {G.PROVISIONING}
    frontier = [G.PROVISIONING]
    while frontier:
        for dst in GRANT_TRANSITIONS.get(frontier.pop(), frozenset()):
            if dst not in reachable:
                reachable.add(dst)
                frontier.append(dst)
    assert reachable == set(G)

    def finishes(state: GrantState, seen: frozenset[GrantState] = frozenset()) -> bool:
        if state in TERMINAL_GRANT_STATES:
            return True
        return any(finishes(d, seen | {state}) for d in GRANT_TRANSITIONS.get(state, ()) if d not in seen)

    assert all(finishes(s) for s in G)


@pytest.mark.parametrize(
    ("reason", "state"),
    [
        pytest.param(EndReason.EXPIRED, G.EXPIRED, id="expired"),
        pytest.param(EndReason.REVOKED, G.REVOKED, id="revoked"),
    ],
)
def test_terminal_state_for(reason: EndReason, state: GrantState) -> None:
    assert terminal_state_for(reason) is state
    assert can_grant_move(G.ENDING, state)
    assert can_grant_move(G.REVOCATION_FAILED, state)


@given(start=st.sampled_from(list(G)), attempts=st.lists(st.sampled_from(list(G)), max_size=30))
def test_applied_grant_moves_never_leave_a_terminal_state(start: GrantState, attempts: list[GrantState]) -> None:
    state = start
    reached_terminal = state in TERMINAL_GRANT_STATES
    for dst in attempts:
        before = state
        if can_grant_move(state, dst):
            state = dst
        if reached_terminal:
            assert state is before
        if before not in LIVE_GRANT_STATES:
            # access is never re-opened once it started ending
            assert state not in LIVE_GRANT_STATES
        reached_terminal = reached_terminal or state in TERMINAL_GRANT_STATES


@given(attempts=st.lists(st.sampled_from(list(R)), max_size=20))
def test_a_request_is_decided_at_most_once(attempts: list[RequestState]) -> None:
    state = R.PENDING
    moves = 0
    for dst in attempts:
        if can_request_move(state, dst):
            state = dst
            moves += 1
    assert moves <= 1
    assert moves == 0 or state is not R.PENDING
