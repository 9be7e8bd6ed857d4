"""Keyturn serves one Slack workspace: every command, click, form and event is checked against it in one
middleware, correctly signed or not. By default the workspace is what auth.test reports at start (the fake
Slack answers it); an Enterprise Grid approver clicking from another workspace of the same org is served;
requests filed through the REST API or the CLI (no team) are approvable from the served workspace only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from service.core.slack_trust import Workspace
from service.operations.request_access import request_access
from service.settings import SettingsError
from service.store.models import AccessRequest, Approval, AuditEvent
from tests.slack.conftest import ALICE, APPR1, SlackWorld, served_world
from tests.support.slack_fake import AUTH_TEST, FakeSlack
from tests.support.slack_signing import (
    JSON,
    block_actions_payload,
    event_callback_body,
    payload_body,
    view_submission_body,
)

EVIL = "T0EVILCORP"
REFUSED = "This action came from a different Slack workspace."


def grid_click(world: SlackWorld, request_id: int, team: str, enterprise: str, key: str) -> Any:
    """APPR1's Approve from workspace `team` of Enterprise Grid org `enterprise`, as Slack sends it."""
    payload = block_actions_payload(APPR1, team_id=team, action_id="approve_request", value=str(request_id),
                                    response_url=world.fake.response_url(key))
    payload["enterprise"] = {"id": enterprise, "name": "Grid"}
    payload["team"]["enterprise_id"] = enterprise
    return world.post(payload_body(payload))


def nothing_done(world: SlackWorld, audits: int = 1) -> None:
    assert world.dispatch.interactions == [] and world.notes() == [] and world.count(Approval) == 0
    assert world.count(AuditEvent) == audits  # the set-up's filing only


def test_the_served_workspace_is_what_auth_test_reports(world: SlackWorld) -> None:
    assert len(world.fake.calls("auth.test")) == 1  # once, at start


def test_a_signed_command_from_another_workspace_files_nothing(world: SlackWorld,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="service.slack.bolt_app"):
        for text in ("ops-read 1h fixing", "list", ""):
            ack = world.command(text, team_id=EVIL)
            assert ack.status_code == 200 and ack.json() == {"response_type": "ephemeral", "text": REFUSED}
    assert sum("outside the served workspace" in r.getMessage() for r in caplog.records) == 3
    assert world.fake.calls("views.open") == []  # not even the form
    assert world.count(AccessRequest) == 0 and world.dispatch.interactions == []


@pytest.mark.parametrize("filed_by", ["slack", "rest"])
def test_a_signed_approve_from_another_workspace_approves_nothing(world: SlackWorld, filed_by: str) -> None:
    # Filed in the served workspace, or through the REST API / CLI, which record no team.
    team = "T0TEAM001" if filed_by == "slack" else None
    rid = request_access(world.ctx, requester=ALICE, role_id="ops-read", team_id=team).request_id
    world.dispatch.notes.clear()
    world.click("approve_request", rid, APPR1, key="evil", team_id=EVIL)
    assert world.reply("evil") == REFUSED
    assert world.request(rid).state == "pending"
    nothing_done(world)
    # The same approver from the served workspace approves it.
    world.click("approve_request", rid, APPR1, key="home")
    assert world.wait(lambda: world.request(rid).state == "approved", what="the approval")


def test_forms_and_events_from_another_workspace_do_nothing(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.dispatch.notes.clear()
    deny = view_submission_body(APPR1, team_id=EVIL, callback_id="deny_request",
                                state_values={"reason": {"reason": "no"}},
                                private_metadata=json.dumps({"request_id": rid}))
    assert world.post(deny).status_code == 200
    form = view_submission_body(ALICE, team_id=EVIL, callback_id="request_access",
                                state_values={"role": {"role": {"type": "static_select",
                                                                "selected_option": {"value": "ops-read"}}},
                                              "duration": {"duration": "1h"}, "reason": {"reason": "x"}})
    assert world.post(form).status_code == 200
    home = event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "home"}, team_id=EVIL)
    assert world.post(home, JSON).status_code == 200
    assert world.request(rid).state == "pending" and world.count(AccessRequest) == 1
    nothing_done(world)
    assert world.fake.calls("chat.postMessage") == [] and world.fake.calls("views.publish") == []
    # The same form from the served workspace files (the form itself was a good one).
    assert world.post(form.replace(EVIL, "T0TEAM001")).status_code == 200
    assert world.count(AccessRequest) == 2


def test_an_enterprise_grid_approver_from_another_workspace_of_the_org_is_served(
    sqlite_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path
) -> None:
    slack_fake.on("auth.test", {**AUTH_TEST, "enterprise_id": "E0GRID001"})
    with served_world(sqlite_url, redis_url, slack_fake, tmp_path) as world:
        rid = world.file("ops-read")  # filed from T0TEAM001
        grid_click(world, rid, "T0TEAM002", "E0OTHER01", key="other-org")
        assert world.reply("other-org") == REFUSED and world.request(rid).state == "pending"
        grid_click(world, rid, "T0TEAM002", "E0GRID001", key="same-org")
        world.wait(lambda: world.request(rid).state == "approved", what="the Grid approval")
        assert world.replies("same-org") == [] and world.count(Approval) == 1


def test_an_unknown_workspace_stops_the_web_from_starting(sqlite_url: str, redis_url: str, slack_fake: FakeSlack,
                                                          tmp_path: Path) -> None:
    slack_fake.fail_next("auth.test", error="invalid_auth")
    with pytest.raises(SettingsError, match=r"auth.test failed \(invalid_auth\).*KEYTURN_SLACK_TEAM_ID"):
        with served_world(sqlite_url, redis_url, slack_fake, tmp_path):
            pass


def test_the_workspace_rule() -> None:
    home = Workspace(frozenset({"T1"}), "E1", "A1")
    ok = {"team_id": "T1", "actor_team_id": "T1", "enterprise_id": None, "app_id": "A1"}
    assert home.refusal(**ok) is None
    assert home.refusal(**{**ok, "team_id": "T2", "actor_team_id": "T2", "enterprise_id": "E1"}) is None
    assert home.refusal(**{**ok, "app_id": "A2"}) == "app A2 is not A1"
    assert home.refusal(**{**ok, "app_id": None}) is not None
    assert home.refusal(**{**ok, "team_id": "T2"}) is not None
    assert home.refusal(**{**ok, "actor_team_id": "T9"}) is not None  # a guest from another workspace
    assert home.refusal(**{**ok, "team_id": None}) is not None
    assert Workspace().refusal(**ok) is not None  # nothing known: nothing served
    assert Workspace(frozenset({"T1"})).refusal(**{**ok, "app_id": "A9"}) is None  # no app id configured
