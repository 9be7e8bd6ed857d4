"""Approvers named by a Slack user group: membership comes from Slack, cached, and fails closed."""

from __future__ import annotations

from slack_sdk import WebClient

from service.core.rules import Actor, RequestView, RoleRules, Vote, decide_vote
from service.core.states import RequestState
from service.slack.groups import UserGroups


def _client(fake) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


def test_member_of_an_approver_group_may_approve(slack_fake) -> None:
    slack_fake.usergroups["S0ONCALL1"] = ["U0DAVE001", "U0ERIN001"]
    groups = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1", "S0OTHER01"}))
    slack_fake.usergroups["S0OTHER01"] = ["U0FRANK01"]
    assert groups.groups_of("U0DAVE001") == frozenset({"S0ONCALL1"})
    assert groups.groups_of("U0ZOE0001") == frozenset()
    rules = RoleRules(role_id="r", approvers=frozenset(), approver_groups=frozenset({"S0ONCALL1"}))
    view = RequestView(RequestState.PENDING, requester="U0ALICE01")
    dave = Actor("U0DAVE001", groups=groups.groups_of("U0DAVE001"))
    zoe = Actor("U0ZOE0001", groups=groups.groups_of("U0ZOE0001"))
    assert decide_vote(rules, view, dave, Vote.APPROVE).outcome.value == "approved"
    assert decide_vote(rules, view, zoe, Vote.APPROVE).reason.value == "not_an_approver"


def test_membership_is_cached_then_refreshed(slack_fake) -> None:
    slack_fake.usergroups["S0ONCALL1"] = ["U0DAVE001"]
    groups = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1"}), ttl=60)
    assert groups.groups_of("U0DAVE001")
    assert groups.groups_of("U0DAVE001")
    assert len(slack_fake.calls("usergroups.users.list")) == 1
    expired = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1"}), ttl=0)
    expired.groups_of("U0DAVE001")
    slack_fake.usergroups["S0ONCALL1"] = []
    assert expired.groups_of("U0DAVE001") == frozenset()


def test_unreachable_slack_fails_closed(slack_fake) -> None:
    slack_fake.usergroups["S0ONCALL1"] = ["U0DAVE001"]
    slack_fake.fail_next("usergroups.users.list", status=500)
    groups = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1"}))
    assert groups.groups_of("U0DAVE001") == frozenset()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_stale_list_is_used_only_for_a_bounded_time_then_fails_closed(slack_fake) -> None:
    """Slack errors after a good read: the last list serves until max_stale, then nobody approves."""
    slack_fake.usergroups["S0ONCALL1"] = ["U0DAVE001"]
    clock = Clock()
    groups = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1"}), ttl=60, max_stale=300, clock=clock)
    assert groups.groups_of("U0DAVE001") == frozenset({"S0ONCALL1"})
    # Dave is removed from the group in Slack, and Slack then stops answering.
    slack_fake.usergroups["S0ONCALL1"] = []
    clock.now += 120
    slack_fake.fail_next("usergroups.users.list", status=500)
    assert groups.groups_of("U0DAVE001") == frozenset({"S0ONCALL1"})  # within the bound: the last list
    clock.now += 200  # 320 s since Slack last answered
    slack_fake.fail_next("usergroups.users.list", status=500)
    assert groups.groups_of("U0DAVE001") == frozenset()  # past it: fail closed
    # Slack answers again: the fresh list (without Dave) is used.
    assert groups.groups_of("U0DAVE001") == frozenset()
    assert "U0DAVE001" not in groups._members["S0ONCALL1"]


def test_removed_approver_cannot_approve_once_the_bound_passes(slack_fake) -> None:
    """The decision itself: a removed approver, Slack down for longer than max_stale, is not an approver."""
    slack_fake.usergroups["S0ONCALL1"] = ["U0DAVE001"]
    clock = Clock()
    groups = UserGroups(_client(slack_fake), frozenset({"S0ONCALL1"}), ttl=60, max_stale=300, clock=clock)
    groups.groups_of("U0DAVE001")
    slack_fake.usergroups["S0ONCALL1"] = []
    clock.now += 301
    slack_fake.fail_next("usergroups.users.list", status=500)
    rules = RoleRules(role_id="r", approvers=frozenset(), approver_groups=frozenset({"S0ONCALL1"}))
    view = RequestView(RequestState.PENDING, requester="U0ALICE01")
    dave = Actor("U0DAVE001", groups=groups.groups_of("U0DAVE001"))
    assert decide_vote(rules, view, dave, Vote.APPROVE).reason.value == "not_an_approver"
