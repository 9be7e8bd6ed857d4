"""Approvals confirmed with a security key: which votes need one, and what a vote without one gets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.core.rules import (
    MESSAGES,
    Actor,
    Outcome,
    Reason,
    RequestView,
    RoleRules,
    Vote,
    decide_vote,
    security_key_needed,
)
from service.core.states import RequestState

REQUESTER, ALICE, BOB, MALLORY = "U0REQ", "U0ALICE", "U0BOB", "U0MALLORY"
PLAIN = RoleRules(role_id="prod", approvers=frozenset({ALICE, BOB, REQUESTER}), allow_self_approval=True)
KEYED = replace(PLAIN, require_security_key=True)
GLASS = replace(PLAIN, break_glass_requires_security_key=True)
QUORUM2 = replace(KEYED, min_approvals=2)
PENDING = RequestView(RequestState.PENDING, REQUESTER)


@pytest.mark.parametrize(
    ("rules", "request_", "actor", "vote", "reason", "key", "outcome", "why"),
    [
        pytest.param(KEYED, PENDING, ALICE, Vote.APPROVE, None, False, Outcome.REFUSED, Reason.SECURITY_KEY_REQUIRED,
                     id="keyed-approve-without-key-refused"),
        pytest.param(KEYED, PENDING, ALICE, Vote.APPROVE, None, True, Outcome.APPROVED, Reason.OK,
                     id="keyed-approve-with-key-counts"),
        pytest.param(KEYED, PENDING, ALICE, Vote.DENY, None, False, Outcome.DENIED, Reason.OK,
                     id="keyed-deny-needs-no-key"),
        pytest.param(KEYED, PENDING, MALLORY, Vote.APPROVE, None, True, Outcome.REFUSED, Reason.NOT_AN_APPROVER,
                     id="a-key-makes-no-one-an-approver"),
        pytest.param(KEYED, replace(PENDING, state=RequestState.APPROVED), ALICE, Vote.APPROVE, None, True,
                     Outcome.REFUSED, Reason.NOT_PENDING, id="a-key-does-not-reopen-a-decided-request"),
        pytest.param(KEYED, replace(PENDING, past_deadline=True), ALICE, Vote.APPROVE, None, True,
                     Outcome.REFUSED, Reason.REQUEST_EXPIRED, id="a-key-does-not-revive-an-expired-request"),
        pytest.param(KEYED, replace(PENDING, identity=Reason.IDENTITY_CHANGED), ALICE, Vote.APPROVE, None, True,
                     Outcome.REFUSED, Reason.IDENTITY_CHANGED, id="a-key-does-not-override-the-identity-check"),
        pytest.param(QUORUM2, replace(PENDING, approvals=frozenset({ALICE})), ALICE, Vote.APPROVE, None, True,
                     Outcome.REFUSED, Reason.ALREADY_VOTED, id="one-key-one-vote"),
        pytest.param(QUORUM2, PENDING, ALICE, Vote.APPROVE, None, True, Outcome.RECORDED, Reason.OK,
                     id="quorum-still-counts-people"),
        pytest.param(QUORUM2, replace(PENDING, approvals=frozenset({ALICE})), BOB, Vote.APPROVE, None, False,
                     Outcome.REFUSED, Reason.SECURITY_KEY_REQUIRED, id="every-approval-of-the-quorum-needs-a-key"),
        pytest.param(KEYED, PENDING, REQUESTER, Vote.APPROVE, "pager at 3am", False, Outcome.REFUSED,
                     Reason.SECURITY_KEY_REQUIRED, id="keyed-role-break-glass-needs-the-key-too"),
        pytest.param(KEYED, PENDING, REQUESTER, Vote.APPROVE, None, False, Outcome.REFUSED,
                     Reason.SECURITY_KEY_REQUIRED, id="break-glass-asks-for-the-key-before-the-reason"),
        pytest.param(GLASS, PENDING, REQUESTER, Vote.APPROVE, "pager at 3am", False, Outcome.REFUSED,
                     Reason.SECURITY_KEY_REQUIRED, id="break-glass-only-flag-refuses-self-approval-without-key"),
        pytest.param(GLASS, PENDING, REQUESTER, Vote.APPROVE, None, True, Outcome.REFUSED,
                     Reason.BREAK_GLASS_NEEDS_REASON, id="break-glass-with-key-still-needs-a-reason"),
        pytest.param(GLASS, PENDING, REQUESTER, Vote.APPROVE, "pager at 3am", True, Outcome.APPROVED, Reason.OK,
                     id="break-glass-with-key-and-reason-approves"),
        pytest.param(GLASS, PENDING, ALICE, Vote.APPROVE, None, False, Outcome.APPROVED, Reason.OK,
                     id="break-glass-only-flag-leaves-other-approvers-alone"),
        pytest.param(replace(GLASS, allow_self_approval=False), PENDING, REQUESTER, Vote.APPROVE, "r", True,
                     Outcome.REFUSED, Reason.SELF_APPROVAL, id="a-key-does-not-allow-self-approval"),
        pytest.param(PLAIN, PENDING, ALICE, Vote.APPROVE, None, False, Outcome.APPROVED, Reason.OK,
                     id="plain-role-unchanged"),
    ],
)
def test_security_key_votes(rules: RoleRules, request_: RequestView, actor: str, vote: Vote, reason: str | None,
                            key: bool, outcome: Outcome, why: Reason) -> None:
    decision = decide_vote(rules, request_, Actor(actor), vote, reason=reason, key_confirmed=key)
    assert (decision.outcome, decision.reason) == (outcome, why)
    if decision.refused:
        assert decision.approvals == request_.approvals  # a refused vote is never counted


@pytest.mark.parametrize(
    ("rules", "actor", "vote", "needed"),
    [
        (KEYED, ALICE, Vote.APPROVE, True), (KEYED, ALICE, Vote.DENY, False), (KEYED, REQUESTER, Vote.APPROVE, True),
        (GLASS, REQUESTER, Vote.APPROVE, True), (GLASS, ALICE, Vote.APPROVE, False),
        (GLASS, REQUESTER, Vote.DENY, False), (PLAIN, ALICE, Vote.APPROVE, False),
        (PLAIN, REQUESTER, Vote.APPROVE, False),
    ],
)
def test_security_key_needed(rules: RoleRules, actor: str, vote: Vote, needed: bool) -> None:
    assert security_key_needed(rules, REQUESTER, Actor(actor), vote) is needed


def test_the_refusal_says_where_to_confirm() -> None:
    assert "security key" in MESSAGES[Reason.SECURITY_KEY_REQUIRED]
