"""What the Slack issue asks for that the other Slack tests did not prove, each over signed HTTP where a
surface is involved: the manifest's scopes against the code, the form following the picked role,
reminders with backoff, user-group approvers, an optional audit channel, Extend only for the requester,
clicks acknowledged in time while Slack is slow, and a revoke that a failing Slack cannot hold up.
"""

from __future__ import annotations

import ast
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from service.core.policy import is_owned
from service.demo.local import seed_iam
from service.operations.revoke_grant import revoke_grant
from service.operations.sweep import sweep
from service.store.models import AccessRequest, Approval, SlackMessage
from service.sync.target import sync_target
from tests.slack.conftest import (
    ALICE,
    APPR1,
    APPR2,
    APPROVERS_CHANNEL,
    AUDIT_CHANNEL,
    BOB,
    CATALOG,
    MALLORY,
    SlackWorld,
    build_world,
    served_world,
)
from tests.support.slack_fake import FakeSlack, SlackCall
from tests.support.slack_signing import block_actions_payload, payload_body

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "config" / "slack-manifest.yaml"
# settings.email_lookup (opt-in) is the only code that reads profiles: its calls need the second manifest.
EMAIL_LOOKUP_CODE = "service/people/"
EMAIL_LOOKUP_MANIFEST = ROOT / "config" / "slack-manifest.email-lookup.yaml"
EMAIL_LOOKUP_SCOPES = {"users_info": frozenset({"users:read", "users:read.email"})}  # profile.email needs both

# Every Web API method Keyturn may call, with the bot scopes Slack's method reference lists for it.
# A method missing here fails the test below: add it with its scopes (and to the manifest).
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "chat_postMessage": frozenset({"chat:write"}),
    "chat_update": frozenset({"chat:write"}),
    "chat_postEphemeral": frozenset({"chat:write"}),
    "views_open": frozenset(),
    "views_update": frozenset(),
    "views_push": frozenset(),
    "views_publish": frozenset(),
    "usergroups_users_list": frozenset({"usergroups:read"}),
    "users_info": frozenset({"users:read"}),
    "conversations_open": frozenset({"im:write"}),
    "auth_test": frozenset(),  # no scope: the workspace the token belongs to
}
# What the Bolt listeners subscribe to needs its own scope: a slash command needs `commands`.
LISTENER_SCOPES = {"command": frozenset({"commands"}), "event": frozenset(), "action": frozenset(),
                   "view": frozenset()}


def python_files() -> list[Path]:
    return sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "workers").rglob("*.py")])


def web_api_calls() -> dict[str, set[str]]:
    """Web API methods called anywhere in service/ and workers/ -> the files calling them; a method handed
    to a call (`after_ack(client.views_open, ...)`) counts as called."""
    api = {name for name in vars(WebClient) if not name.startswith("_")}
    found: dict[str, set[str]] = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for target in (node.func, *node.args):
                if isinstance(target, ast.Attribute) and target.attr in api:
                    found.setdefault(target.attr, set()).add(str(path.relative_to(ROOT)))
    return found


def bolt_registrations() -> dict[str, set[str]]:
    """`app.command("/access")`, `app.event("app_home_opened")`, …: kind -> the names registered."""
    seen: dict[str, set[str]] = {}
    for path in (ROOT / "service" / "slack").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "app"
                    and node.func.attr in LISTENER_SCOPES and node.args
                    and isinstance(node.args[0], ast.Constant)):
                seen.setdefault(node.func.attr, set()).add(str(node.args[0].value))
    return seen


def manifest(path: Path = MANIFEST) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def split_calls() -> tuple[set[str], set[str]]:
    """(methods the default app calls, methods only the email lookup calls)."""
    calls = web_api_calls()
    core = {m for m, files in calls.items() if any(not f.startswith(EMAIL_LOOKUP_CODE) for f in files)}
    return core, set(calls) - core


# ---- 8. the manifest ------------------------------------------------------------------------------
def test_manifest_scopes_equal_the_scopes_of_what_the_code_calls() -> None:
    calls, _ = split_calls()
    unknown = sorted(set(web_api_calls()) - set(METHOD_SCOPES))
    assert not unknown, f"Web API methods without a known scope (add them to METHOD_SCOPES): {unknown}"
    assert {"chat_postMessage", "chat_update", "views_open", "views_publish", "usergroups_users_list"} <= set(calls)
    needed = set().union(*(METHOD_SCOPES[m] for m in calls))
    needed |= set().union(*(LISTENER_SCOPES[kind] for kind in bolt_registrations()))
    declared = manifest()["oauth_config"]["scopes"]["bot"]
    assert len(declared) == len(set(declared))
    assert set(declared) == needed
    assert "user" not in manifest()["oauth_config"]["scopes"]  # no user-token scopes at all


def test_email_lookup_manifest_adds_exactly_the_scopes_of_the_lookup() -> None:
    """users.info is called only by the opt-in email lookup: the default manifest does not ask to read
    profiles; the email-lookup manifest is the default one plus users:read and users:read.email."""
    core, optional = split_calls()
    assert "users_info" in optional and "users_info" not in core
    default, lookup = manifest(), manifest(EMAIL_LOOKUP_MANIFEST)
    extra = set().union(*(EMAIL_LOOKUP_SCOPES.get(m, METHOD_SCOPES[m]) for m in optional))
    declared = lookup["oauth_config"]["scopes"]["bot"]
    assert len(declared) == len(set(declared))
    assert set(declared) == set(default["oauth_config"]["scopes"]["bot"]) | extra
    assert extra == {"users:read", "users:read.email"}
    assert not extra & set(default["oauth_config"]["scopes"]["bot"])
    lookup["oauth_config"]["scopes"]["bot"] = default["oauth_config"]["scopes"]["bot"]
    assert lookup == default  # the rest is the same app: the two files cannot drift apart


def test_manifest_declares_the_command_interactivity_app_home_and_events_the_code_listens_to() -> None:
    m, registered = manifest(), bolt_registrations()
    url = m["settings"]["interactivity"]["request_url"]
    assert url.endswith("/slack/events") and m["settings"]["interactivity"]["is_enabled"] is True
    assert registered["action"] and registered["view"]  # buttons and forms need interactivity
    assert {c["command"] for c in m["features"]["slash_commands"]} == registered["command"] == {"/access"}
    assert all(c["url"] == url for c in m["features"]["slash_commands"])
    assert m["settings"]["event_subscriptions"]["request_url"] == url
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == registered["event"] == {"app_home_opened"}
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert m["settings"]["socket_mode_enabled"] is False  # Slack must reach POST /slack/events


def test_readme_installs_from_the_manifest_and_names_its_scopes() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Slack setup", 1)[1].split("\n## ", 1)[0]
    assert "config/slack-manifest.yaml" in setup and "From an app manifest" in setup
    for scope in manifest()["oauth_config"]["scopes"]["bot"]:
        assert f"`{scope}`" in setup, scope
    for variable in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert variable in setup


# ---- 1. the form follows the picked role ------------------------------------------------------------
def pick(world: SlackWorld, role: str, user: str = ALICE) -> Any:
    """A static_select choice in the open /access modal, as Slack sends it (dispatch_action)."""
    payload = block_actions_payload(user, view={"id": "V0FORM0001", "type": "modal", "callback_id": "request_access",
                                                "hash": "1.abc", "state": {"values": {}}})
    payload["actions"] = [{"type": "static_select", "action_id": "role", "block_id": "role",
                           "selected_option": {"text": {"type": "plain_text", "text": role}, "value": role},
                           "action_ts": f"{time.time():.6f}"}]
    return world.post(payload_body(payload))


def blocks_by_id(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"]}


def test_the_form_follows_the_picked_role_its_maximum_and_its_reason_rule(lite: SlackWorld) -> None:
    lite.command("")
    opened = blocks_by_id(lite.fake.wait_for("views.open").get("view"))
    assert opened["role"]["dispatch_action"] is True
    assert opened["reason"]["optional"] is True  # no role picked yet: the role decides (below)

    started = time.monotonic()
    assert pick(lite, "ops-admin").status_code == 200
    assert time.monotonic() - started < 3.0
    update = lite.fake.wait_for("views.update")
    assert update.params["view_id"] == "V0FORM0001"
    form = blocks_by_id(update.get("view"))
    assert form["role"]["element"]["initial_option"]["value"] == "ops-admin"
    assert form["duration"]["hint"]["text"] == "e.g. 30m, 2h — at most 4h for ops-admin"
    assert form["duration"]["element"]["initial_value"] == "1h"  # the role's default
    assert form["reason"]["optional"] is False  # ops-admin requires a reason

    pick(lite, "ops-read")
    second = lite.fake.wait_for("views.update", lambda c: blocks_by_id(c.get("view"))["role"]["element"]
                                ["initial_option"]["value"] == "ops-read")
    form = blocks_by_id(second.get("view"))
    assert form["duration"]["hint"]["text"] == "e.g. 30m, 2h — at most 1d for ops-read"
    assert form["reason"]["optional"] is True
    assert lite.count(AccessRequest) == 0  # picking files nothing


# ---- 2. reminders with backoff -------------------------------------------------------------------
@pytest.fixture
def reminding(db_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    with served_world(db_url, redis_url, slack_fake, tmp_path, reminder_after="10m") as w:
        yield w


def reminders(world: SlackWorld) -> list[SlackCall]:
    return [c for c in world.fake.calls("chat.postMessage") if c.params.get("thread_ts")]


def test_reminders_back_off_in_the_approvers_thread_and_stop_once_decided(reminding: SlackWorld) -> None:
    world = reminding
    rid = world.file("ops-admin")
    world.deliver()
    (ask,) = [c for c in world.fake.calls("chat.postMessage") if c.params["channel"] == APPROVERS_CHANNEL]
    # First after reminder_after (10m), then 20m later, then 40m later: each due moment once, never before.
    schedule = [(9, []), (10.02, [rid]), (10.02, []), (29, []), (30.05, [rid]), (30.05, []), (69, []),
                (70.1, [rid])]
    for minutes, expected in schedule:
        assert sweep(world.shifted(minutes=minutes)).reminded == expected, minutes
    world.deliver()
    sent = reminders(world)
    assert len(sent) == 3
    for call in sent:
        assert (call.params["channel"], call.params["thread_ts"]) == (APPROVERS_CHANNEL, ask.response["ts"])
        assert call.params["text"] == (f":bell: Request #{rid} from <@{ALICE}> for `ops-admin` is still waiting "
                                       f"(0 approval(s) so far).")
    world.approve(rid, APPR1, APPR2)
    assert sweep(world.shifted(minutes=200)).reminded == []
    world.notifier.handle("request.reminder", request_id=rid)  # a late task for a decided request: silent
    world.deliver()
    assert len(reminders(world)) == 3


def test_reminders_reach_each_approvers_dm_when_the_role_has_no_channel(reminding: SlackWorld) -> None:
    world = reminding
    rid = world.file("ops-read", user=BOB)
    world.deliver()
    assert sweep(world.shifted(minutes=10, seconds=1)).reminded == [rid]
    world.deliver()
    with world.ctx.store() as s:
        asked = {m.channel: m.ts for m in s.query(SlackMessage).filter(SlackMessage.request_id == rid)}
    assert set(asked) == {"D" + ALICE, "D" + APPR1}
    assert {(c.params["channel"], c.params["thread_ts"]) for c in reminders(world)} == set(asked.items())


# ---- 2/6. approvers given as a Slack user group ---------------------------------------------------------
GROUP = "S0ONCALL1"
GROUP_ROLE = {"id": "oncall-admin", "name": "On-call admin", "account": "sandbox", "role_name": "OncallAdmin",
              "path": "/keyturn/", "approvers": [GROUP], "require_reason": False}


@pytest.fixture
def grouped(db_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    slack_fake.usergroups[GROUP] = [APPR2, BOB, ALICE]
    with served_world(db_url, redis_url, slack_fake, tmp_path, roles=[*CATALOG["roles"], GROUP_ROLE]) as w:
        yield w


def test_group_approvers_get_a_dm_each_and_membership_is_checked_at_click_time(grouped: SlackWorld) -> None:
    world = grouped
    rid = world.file("oncall-admin", user=ALICE)
    world.deliver()
    asked = sorted(c.params["channel"] for c in world.fake.calls("chat.postMessage")
                   if any(b["type"] == "actions" for b in c.get("blocks") or []))
    assert asked == sorted([APPR2, BOB])  # the group's members, never the requester
    world.click("approve_request", rid, MALLORY, key="m")
    assert world.reply("m") == "You are not an approver for this role."
    world.click("approve_request", rid, BOB, key="bob")
    world.wait(lambda: world.request(rid).state == "approved", what="the group member's approval")
    assert world.request(rid).decided_by == BOB
    assert [a.approver for a in _approvals(world, rid)] == [BOB]


def _approvals(world: SlackWorld, rid: int) -> list[Approval]:
    with world.ctx.store() as s:
        return list(s.query(Approval).filter(Approval.request_id == rid).all())


# ---- 5. the audit channel is optional ------------------------------------------------------------
@pytest.fixture
def unaudited(sqlite_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    raw = json.loads(json.dumps(CATALOG))
    del raw["settings"]["audit_channel"]
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    w, served = build_world(sqlite_url, redis_url, slack_fake, path)
    try:
        yield w
    finally:
        served.close()
        w.rt.engine.dispose()


def test_without_an_audit_channel_everything_else_is_still_told(unaudited: SlackWorld) -> None:
    world = unaudited
    assert world.ctx.catalog.audit_channel is None
    rid = world.file("break-glass", user=ALICE, reason="prod down")
    world.click("approve_request", rid, MALLORY, key="m")
    assert world.reply("m") == "You are not an approver for this role."
    world.submit("break_glass", {"reason": {"reason": "pager storm"}}, ALICE, json.dumps({"request_id": rid}))
    world.wait(lambda: world.request(rid).state == "approved", what="the break-glass approval")
    world.wait(lambda: world.notes("request.decided"), what="the decision note")
    world.deliver()
    channels = {c.params["channel"] for c in world.fake.calls("chat.postMessage")}
    assert AUDIT_CHANNEL not in channels and APPROVERS_CHANNEL in channels and ALICE in channels
    assert [e.actor for e in world.audit("vote.refused")] == [MALLORY]  # still in the database's audit log


# ---- 3/6. Extend: only the requester, only while live ------------------------------------------------
def test_extend_is_refused_to_others_and_after_the_access_ended(lite: SlackWorld) -> None:
    grant_id = lite.approve(lite.file("ops-read"), APPR1)
    assert grant_id is not None
    lite.click("extend_grant", grant_id, BOB, key="bob")
    assert lite.reply("bob") == "Only the requester can do that."
    lite.click("extend_grant", grant_id, APPR1, key="appr")  # an approver cannot ask on Alice's behalf either
    assert lite.reply("appr") == "Only the requester can do that."
    assert lite.fake.calls("views.open") == []
    forged = lite.submit("extend_grant", {"duration": {"duration": "1h"}, "reason": {"reason": "x"}}, BOB,
                         json.dumps({"grant_id": grant_id}))
    assert forged.status_code == 200
    lite.fake.wait_for("chat.postMessage", lambda c: c.params["channel"] == BOB)  # told by DM, nothing filed
    assert lite.count(AccessRequest) == 1

    lite.click("extend_grant", grant_id, ALICE, key="alice")
    assert lite.fake.wait_for("views.open").get("view")["callback_id"] == "extend_grant"
    revoke_grant(lite.ctx, grant_id=grant_id, actor_id=ALICE)
    lite.click("extend_grant", grant_id, ALICE, key="late")
    assert lite.reply("late") == "This access has already ended."
    assert len(lite.fake.calls("views.open")) == 1


# ---- 7. every click is acknowledged in time, whatever Slack does -----------------------------------
@pytest.mark.parametrize(("action", "user"), [("deny_request", APPR1), ("extend_grant", ALICE),
                                              ("request_again", ALICE)])
def test_clicks_ack_within_3s_while_views_open_hangs(lite: SlackWorld, action: str, user: str) -> None:
    grant_id = lite.approve(lite.file("ops-read"), APPR1)
    rid = lite.file("ops-admin")
    value = {"deny_request": rid, "extend_grant": grant_id, "request_again": "ops-read"}[action]
    lite.fake.fail_next("views.open", status=500, delay=3.5)
    started = time.monotonic()
    resp = lite.click(action, str(value), user, key="slow")
    assert resp.status_code == 200 and time.monotonic() - started < 2.0
    assert "Something went wrong (error id" in lite.reply("slow", timeout=10)
    assert lite.request(rid).state == "pending"


# ---- 7. a failing Slack never blocks or undoes a revoke ----------------------------------------------
def test_a_failing_slack_never_blocks_or_rolls_back_a_revoke(moto_reset: str, world: SlackWorld) -> None:
    seed_iam(boto3.client("iam"), world.ctx.catalog)
    grant_id = world.approve(world.file("ops-mfa"), APPR1)
    assert grant_id is not None
    _sync_all(world)
    assert world.grant(grant_id).state == "active" and len(_owned("OpsMfa")) == 1
    world.dispatch.notes.clear()
    for method in ("chat.postMessage", "chat.update", "response_url"):
        world.fake.fail_next(method, status=500, times=20)
    started = time.monotonic()
    assert world.click("revoke_grant", grant_id, ALICE, key="done").status_code == 200
    assert time.monotonic() - started < 3.0
    world.wait(lambda: world.grant(grant_id).state == "ending", what="the revoke to be recorded")
    _sync_all(world)
    assert world.grant(grant_id).state == "revoked" and _owned("OpsMfa") == []
    with pytest.raises(SlackApiError):
        world.deliver()  # the notify task fails (Celery retries it); the revoke stands
    assert world.grant(grant_id).state == "revoked" and _owned("OpsMfa") == []


def _sync_all(world: SlackWorld) -> None:
    while world.dispatch.syncs:
        sync_target(world.ctx, aws=world.rt.aws, locks=world.rt.locks, target_key=world.dispatch.syncs.pop(0))


def _owned(role_name: str) -> list[dict[str, Any]]:
    doc = boto3.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    return [s for s in doc["Statement"] if is_owned(s)]
