"""Who may file, approve, deny, cancel and revoke: decision tables and an interleaving property."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.rules import (
    MESSAGES,
    Actor,
    Outcome,
    Reason,
    RequestView,
    RoleRules,
    Vote,
    check_filing,
    decide_cancel,
    decide_vote,
    may_revoke,
)
from service.core.states import GrantState, RequestState, can_request_move

REQUESTER = "U0REQ"
ALICE, BOB, CAROL, MALLORY = "U0ALICE", "U0BOB", "U0CAROL", "U0MALLORY"
OPS_GROUP = "S0OPS"

RULES = RoleRules(
    role_id="prod-admin",
    approvers=frozenset({ALICE, BOB}),
    approver_groups=frozenset({OPS_GROUP}),
    require_reason=True,
    default_duration=timedelta(hours=1),
    max_duration=timedelta(hours=4),
)
PENDING = RequestView(RequestState.PENDING, REQUESTER)


# ---- filing -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rules", "duration", "reason", "has_principal", "expected", "granted"),
    [
        pytest.param(RULES, timedelta(hours=2), "deploy", True, Reason.OK, timedelta(hours=2), id="ok"),
        pytest.param(RULES, None, "deploy", True, Reason.OK, timedelta(hours=1), id="default-duration-when-none"),
        pytest.param(RULES, timedelta(hours=4), "deploy", True, Reason.OK, timedelta(hours=4), id="exactly-max"),
        pytest.param(RULES, timedelta(hours=2), "deploy", False, Reason.NO_PRINCIPAL, None, id="no-principal"),
        pytest.param(
            RULES, timedelta(hours=4, seconds=1), "deploy", True, Reason.DURATION_TOO_LONG, None, id="too-long"
        ),
        pytest.param(RULES, timedelta(0), "deploy", True, Reason.DURATION_NOT_POSITIVE, None, id="zero"),
        pytest.param(RULES, timedelta(minutes=-5), "deploy", True, Reason.DURATION_NOT_POSITIVE, None, id="negative"),
        pytest.param(RULES, timedelta(hours=1), None, True, Reason.REASON_REQUIRED, None, id="missing-reason"),
        pytest.param(RULES, timedelta(hours=1), "  \n", True, Reason.REASON_REQUIRED, None, id="blank-reason"),
        pytest.param(
            replace(RULES, require_reason=False), timedelta(hours=1), None, True, Reason.OK, timedelta(hours=1),
            id="reason-optional",
        ),
        pytest.param(
            replace(RULES, default_duration=timedelta(hours=8)), None, "x", True, Reason.DURATION_TOO_LONG, None,
            id="default-checked-against-max",
        ),
    ],
)
def test_check_filing(
    rules: RoleRules, duration: timedelta | None, reason: str | None, has_principal: bool,
    expected: Reason, granted: timedelta | None,
) -> None:
    check = check_filing(rules, duration=duration, reason=reason, has_principal=has_principal)
    assert check.reason is expected
    assert check.ok is (expected is Reason.OK)
    assert check.duration == granted


def test_every_refusal_reason_has_a_message() -> None:
    assert set(MESSAGES) == set(Reason) - {Reason.OK}
    assert all(text.strip() for text in MESSAGES.values())


# ---- voting -------------------------------------------------------------------------------------
SELF_OK = replace(RULES, approvers=RULES.approvers | {REQUESTER}, allow_self_approval=True)
SELF_NO = replace(RULES, approvers=RULES.approvers | {REQUESTER})
QUORUM2 = replace(RULES, min_approvals=2)


@pytest.mark.parametrize(
    ("rules", "request_", "actor", "vote", "reason", "outcome", "why", "approvals", "break_glass"),
    [
        pytest.param(RULES, PENDING, Actor(ALICE), Vote.APPROVE, None, Outcome.APPROVED, Reason.OK, {ALICE}, False,
                     id="approver-approves"),
        pytest.param(RULES, PENDING, Actor(ALICE), Vote.DENY, None, Outcome.DENIED, Reason.OK, set(), False,
                     id="approver-denies"),
        pytest.param(RULES, replace(PENDING, state=RequestState.APPROVED), Actor(ALICE), Vote.APPROVE, None,
                     Outcome.REFUSED, Reason.NOT_PENDING, set(), False, id="not-pending"),
        pytest.param(RULES, replace(PENDING, state=RequestState.CANCELLED), Actor(ALICE), Vote.DENY, None,
                     Outcome.REFUSED, Reason.NOT_PENDING, set(), False, id="deny-after-cancel"),
        pytest.param(RULES, PENDING, Actor(MALLORY), Vote.APPROVE, None, Outcome.REFUSED, Reason.NOT_AN_APPROVER,
                     set(), False, id="non-approver-approves"),
        pytest.param(RULES, PENDING, Actor(MALLORY), Vote.DENY, None, Outcome.REFUSED, Reason.NOT_AN_APPROVER,
                     set(), False, id="non-approver-denies"),
        pytest.param(RULES, PENDING, Actor(MALLORY, is_admin=True), Vote.APPROVE, None, Outcome.REFUSED,
                     Reason.NOT_AN_APPROVER, set(), False, id="admin-is-not-an-approver"),
        pytest.param(RULES, PENDING, Actor(CAROL, groups=frozenset({OPS_GROUP})), Vote.APPROVE, None,
                     Outcome.APPROVED, Reason.OK, {CAROL}, False, id="approver-via-user-group"),
        pytest.param(RULES, PENDING, Actor(CAROL, groups=frozenset({"S0OTHER"})), Vote.APPROVE, None,
                     Outcome.REFUSED, Reason.NOT_AN_APPROVER, set(), False, id="other-user-group"),
        pytest.param(SELF_NO, PENDING, Actor(REQUESTER), Vote.APPROVE, "urgent", Outcome.REFUSED,
                     Reason.SELF_APPROVAL, set(), False, id="self-approval-refused"),
        pytest.param(SELF_OK, PENDING, Actor(REQUESTER), Vote.APPROVE, "prod is down", Outcome.APPROVED,
                     Reason.OK, {REQUESTER}, True, id="break-glass-with-reason"),
        pytest.param(SELF_OK, PENDING, Actor(REQUESTER), Vote.APPROVE, None, Outcome.REFUSED,
                     Reason.BREAK_GLASS_NEEDS_REASON, set(), False, id="break-glass-without-reason"),
        pytest.param(SELF_OK, PENDING, Actor(REQUESTER), Vote.APPROVE, "   ", Outcome.REFUSED,
                     Reason.BREAK_GLASS_NEEDS_REASON, set(), False, id="break-glass-blank-reason"),
        pytest.param(replace(SELF_OK, min_approvals=3), replace(PENDING, approvals=frozenset({ALICE})),
                     Actor(REQUESTER), Vote.APPROVE, "prod is down", Outcome.APPROVED, Reason.OK,
                     {ALICE, REQUESTER}, True, id="break-glass-decides-alone"),
        pytest.param(SELF_NO, PENDING, Actor(REQUESTER), Vote.DENY, None, Outcome.DENIED, Reason.OK, set(), False,
                     id="requester-approver-may-deny"),
        pytest.param(QUORUM2, replace(PENDING, approvals=frozenset({ALICE})), Actor(ALICE), Vote.APPROVE, None,
                     Outcome.REFUSED, Reason.ALREADY_VOTED, {ALICE}, False, id="already-voted"),
        pytest.param(QUORUM2, PENDING, Actor(ALICE), Vote.APPROVE, None, Outcome.RECORDED, Reason.OK, {ALICE},
                     False, id="quorum-2-first-recorded"),
        pytest.param(QUORUM2, replace(PENDING, approvals=frozenset({ALICE})), Actor(BOB), Vote.APPROVE, None,
                     Outcome.APPROVED, Reason.OK, {ALICE, BOB}, False, id="quorum-2-second-approves"),
        pytest.param(QUORUM2, replace(PENDING, approvals=frozenset({ALICE})), Actor(BOB), Vote.DENY, None,
                     Outcome.DENIED, Reason.OK, {ALICE}, False, id="one-deny-decides"),
    ],
)
def test_decide_vote(
    rules: RoleRules, request_: RequestView, actor: Actor, vote: Vote, reason: str | None,
    outcome: Outcome, why: Reason, approvals: set[str], break_glass: bool,
) -> None:
    decision = decide_vote(rules, request_, actor, vote, reason=reason)
    assert decision.outcome is outcome
    assert decision.reason is why
    assert decision.refused is (outcome is Outcome.REFUSED)
    assert decision.break_glass is break_glass
    if decision.refused:
        assert decision.approvals == request_.approvals
    else:
        assert decision.approvals == frozenset(approvals)


def test_quorum_counts_distinct_approvers_only() -> None:
    first = decide_vote(QUORUM2, PENDING, Actor(ALICE), Vote.APPROVE)
    assert first.outcome is Outcome.RECORDED
    again = decide_vote(QUORUM2, replace(PENDING, approvals=first.approvals), Actor(ALICE), Vote.APPROVE)
    assert again.outcome is Outcome.REFUSED and again.reason is Reason.ALREADY_VOTED
    assert again.approvals == frozenset({ALICE})
    second = decide_vote(QUORUM2, replace(PENDING, approvals=again.approvals), Actor(BOB), Vote.APPROVE)
    assert second.outcome is Outcome.APPROVED and second.approvals == frozenset({ALICE, BOB})


# ---- cancelling and revoking ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "actor", "refused", "why"),
    [
        pytest.param(RequestState.PENDING, Actor(REQUESTER), False, Reason.OK, id="requester"),
        pytest.param(RequestState.PENDING, Actor(MALLORY, is_admin=True), False, Reason.OK, id="admin"),
        pytest.param(RequestState.PENDING, Actor(ALICE), True, Reason.NOT_REQUESTER, id="approver-is-not-requester"),
        pytest.param(RequestState.APPROVED, Actor(REQUESTER), True, Reason.NOT_PENDING, id="already-approved"),
        pytest.param(RequestState.TIMED_OUT, Actor(MALLORY, is_admin=True), True, Reason.NOT_PENDING, id="timed-out"),
    ],
)
def test_decide_cancel(state: RequestState, actor: Actor, refused: bool, why: Reason) -> None:
    decision = decide_cancel(RequestView(state, REQUESTER), actor)
    assert decision.refused is refused
    assert decision.reason is why


@pytest.mark.parametrize(
    ("grant_state", "actor", "expected"),
    [
        pytest.param(GrantState.ACTIVE, Actor(REQUESTER), Reason.OK, id="requester-done"),
        pytest.param(GrantState.PROVISIONING, Actor(REQUESTER), Reason.OK, id="provisioning"),
        pytest.param(GrantState.ACTIVE, Actor(ALICE), Reason.OK, id="approver"),
        pytest.param(GrantState.ACTIVE, Actor(CAROL, groups=frozenset({OPS_GROUP})), Reason.OK, id="group-approver"),
        pytest.param(GrantState.ACTIVE, Actor(MALLORY, is_admin=True), Reason.OK, id="admin"),
        pytest.param(GrantState.ACTIVE, Actor(MALLORY), Reason.NOT_ALLOWED_TO_REVOKE, id="stranger"),
        *[
            pytest.param(s, Actor(MALLORY, is_admin=True), Reason.NOT_REVOCABLE, id=f"admin-{s}")
            for s in GrantState
            if s not in (GrantState.PROVISIONING, GrantState.ACTIVE)
        ],
    ],
)
def test_may_revoke(grant_state: GrantState, actor: Actor, expected: Reason) -> None:
    assert may_revoke(RULES, grant_state, REQUESTER, actor) is expected


# ---- property: any interleaving of votes and cancels --------------------------------------------
POOL = ["U0A1", "U0A2", "U0A3", "U0A4"]
STRANGER = "U0NOBODY"
GROUP_MEMBER = "U0GROUPIE"


Scenario = tuple[RoleRules, list[tuple[str, str, Vote, str | None]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    approvers = frozenset(draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True)))
    if draw(st.booleans()):
        approvers |= {REQUESTER}
    rules = RoleRules(
        role_id="r",
        approvers=approvers,
        approver_groups=frozenset({OPS_GROUP}) if draw(st.booleans()) else frozenset(),
        min_approvals=draw(st.integers(1, 3)),
        allow_self_approval=draw(st.booleans()),
    )
    actors = st.sampled_from([*POOL, REQUESTER, STRANGER, GROUP_MEMBER])
    event = st.tuples(
        st.sampled_from(["vote", "vote", "vote", "cancel"]),
        actors,
        st.sampled_from(list(Vote)),
        st.sampled_from([None, "", "prod is down"]),
    )
    return rules, draw(st.lists(event, max_size=25))


def _actor(user_id: str) -> Actor:
    return Actor(user_id, groups=frozenset({OPS_GROUP}) if user_id == GROUP_MEMBER else frozenset())


@given(scenarios())
def test_any_interleaving_reaches_at_most_one_sound_decision(scenario: Scenario) -> None:
    rules, events = scenario
    state, approvals, decisions = RequestState.PENDING, frozenset[str](), 0
    for kind, user_id, vote, reason in events:
        actor = _actor(user_id)
        view = RequestView(state, REQUESTER, approvals)
        before = (state, approvals)
        if kind == "cancel":
            d = decide_cancel(view, actor)
            new_state = state if d.refused else RequestState.CANCELLED
            new_approvals = approvals
            if user_id != REQUESTER:
                assert d.refused
        else:
            d = decide_vote(rules, view, actor, vote, reason=reason)
            new_approvals = approvals if d.refused else d.approvals
            new_state = {Outcome.APPROVED: RequestState.APPROVED, Outcome.DENIED: RequestState.DENIED}.get(
                d.outcome, state
            )
            if not (user_id in rules.approvers or actor.groups & rules.approver_groups):
                assert d.refused and d.reason in (Reason.NOT_AN_APPROVER, Reason.NOT_PENDING)
            if d.outcome is Outcome.APPROVED:
                others = new_approvals - {REQUESTER}
                assert len(others) >= rules.min_approvals or d.break_glass
                if d.break_glass:
                    assert user_id == REQUESTER and rules.allow_self_approval and (reason or "").strip()
            if d.outcome is Outcome.RECORDED:
                assert new_approvals == approvals | {user_id} and len(new_approvals) == len(approvals) + 1
        if d.refused:
            assert (new_state, new_approvals) == before
        if new_state is not state:
            assert can_request_move(state, new_state)
            decisions += 1
        elif state is not RequestState.PENDING:
            assert d.refused and d.reason is Reason.NOT_PENDING
        # only approvers (and the requester only by break-glass) ever appear among the approvals
        assert all(u in rules.approvers or (u == GROUP_MEMBER and rules.approver_groups) for u in new_approvals)
        assert REQUESTER not in new_approvals or new_state is RequestState.APPROVED
        state, approvals = new_state, new_approvals
    assert decisions <= 1


# ---- the requester's identity when the approval lands -------------------------------------------------
@pytest.mark.parametrize(("filed", "current", "reason"), [
    ("arn:aws:iam::1:user/alice", "arn:aws:iam::1:user/alice", Reason.OK),
    ("arn:aws:iam::1:user/alice", None, Reason.REQUESTER_UNMAPPED),
    ("arn:aws:iam::1:user/alice", "arn:aws:iam::2:user/alice", Reason.IDENTITY_CHANGED),
    (None, "sso_user:alice", Reason.IDENTITY_CHANGED),
])
def test_identity_check(filed: str | None, current: str | None, reason: Reason) -> None:
    from service.core.rules import identity_check

    assert identity_check(filed, current) is reason


def test_an_approval_for_a_remapped_requester_is_refused_but_a_deny_is_not() -> None:
    from service.core.rules import RequestView

    rules = RoleRules(role_id="r", approvers=frozenset({"U0BOB0001"}))
    view = RequestView(state=RequestState.PENDING, requester="U0ALICE01", identity=Reason.IDENTITY_CHANGED)
    bob = Actor("U0BOB0001")
    assert decide_vote(rules, view, bob, Vote.APPROVE).reason is Reason.IDENTITY_CHANGED
    assert decide_vote(rules, view, bob, Vote.DENY).outcome is Outcome.DENIED


def test_a_vote_on_a_request_past_its_deadline_is_refused() -> None:
    from service.core.rules import RequestView

    rules = RoleRules(role_id="r", approvers=frozenset({"U0BOB0001"}))
    view = RequestView(state=RequestState.PENDING, requester="U0ALICE01", past_deadline=True)
    for vote in Vote:
        assert decide_vote(rules, view, Actor("U0BOB0001"), vote).reason is Reason.REQUEST_EXPIRED


@pytest.mark.parametrize(("pending", "limit", "reason"), [
    (0, 5, Reason.OK), (4, 5, Reason.OK), (5, 5, Reason.TOO_MANY_PENDING), (1, 1, Reason.TOO_MANY_PENDING)])
def test_pending_requests_per_person_are_capped(pending: int, limit: int, reason: Reason) -> None:
    rules = RoleRules(role_id="r", approvers=frozenset({"U0BOB0001"}))
    check = check_filing(rules, duration=timedelta(hours=1), reason="x", has_principal=True, pending=pending,
                         max_pending=limit)
    assert check.reason is reason
