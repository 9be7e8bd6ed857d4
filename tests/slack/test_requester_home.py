"""The requester's side over signed HTTP with IAM on a moto server (syncs run in-process): the grant DM
(console link, CLI profile, expiry), "I'm done", "Extend" (expiry moves, access never blinks), the DMs
at every state change, the audit channel, and App Home with "Request again".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from service.core.policy import is_owned
from service.demo.local import seed_iam
from service.operations.sweep import sweep
from service.store.models import AccessRequest, Grant
from service.sync.target import sync_target
from tests.slack.conftest import ACCOUNT, ALICE, APPR1, APPR2, AUDIT_CHANNEL, BOB, CATALOG, SlackWorld, served_world
from tests.support.slack_fake import FakeSlack, SlackCall


@pytest.fixture
def iam_world(moto_reset: str, world: SlackWorld) -> SlackWorld:
    """The world with moto's IAM seeded from the catalogue (roles with a foreign statement, users)."""
    seed_iam(boto3.client("iam"), world.ctx.catalog)
    return world


def sync_all(world: SlackWorld) -> None:
    """What the worker does with the recorded sync wake-ups, until none are left."""
    while world.dispatch.syncs:
        key = world.dispatch.syncs.pop(0)
        sync_target(world.ctx, aws=world.rt.aws, locks=world.rt.locks, target_key=key)


def dms(world: SlackWorld, user: str = ALICE) -> list[SlackCall]:
    return [c for c in world.fake.calls("chat.postMessage") if c.params["channel"] == user]


def audit_lines(world: SlackWorld) -> list[str]:
    return [c.params["text"] for c in world.fake.calls("chat.postMessage") if c.params["channel"] == AUDIT_CHANNEL]


def owned_statements(role_name: str) -> list[dict[str, Any]]:
    doc = boto3.client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
    return [s for s in doc["Statement"] if is_owned(s)]


def granted(world: SlackWorld, role: str = "ops-mfa", duration: str = "1h") -> int:
    """File, approve and sync: an active grant, its notifications delivered."""
    grant_id = world.approve(world.file(role, duration=duration), APPR1)
    assert grant_id is not None
    sync_all(world)
    assert world.grant(grant_id).state == "active"
    world.deliver()
    return grant_id


# ---- the grant DM ------------------------------------------------------------------------------------
def test_grant_dm_has_the_console_link_profile_expiry_and_buttons(iam_world: SlackWorld) -> None:
    world = iam_world
    grant_id = granted(world, "ops-mfa")
    grant = world.grant(grant_id)
    dm = next(c for c in dms(world) if c.get("blocks") and "Switch Role" in json.dumps(c.get("blocks")))
    link_block, profile_block, buttons = dm.get("blocks")
    text = link_block["text"]["text"]
    assert f"You have *Ops with MFA* until <!date^{int(grant.expires_at.timestamp())}^" in text
    assert f"|{grant.expires_at:%Y-%m-%d %H:%M} UTC>" in text  # the fallback for old clients
    url = re.search(r"<(https://[^|>]+)\|Open the AWS console \(Switch Role\)>", text)
    assert url and urlsplit(url.group(1)).netloc == "signin.aws.amazon.com"
    assert parse_qs(urlsplit(url.group(1)).query) == {
        "account": [ACCOUNT], "roleName": ["keyturn/OpsMfa"], "displayName": ["Ops with MFA (sandbox)"],
        "color": ["FAD791"]}
    profile = profile_block["text"]["text"].split("```")[1]
    *lines, duration = profile.splitlines()
    assert lines == [
        "[profile keyturn-ops-mfa]", f"role_arn = arn:aws:iam::{ACCOUNT}:role/keyturn/OpsMfa",
        "source_profile = default", "role_session_name = alice", f"mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/alice"]
    assert 3500 < int(duration.removeprefix("duration_seconds = ")) <= 3600  # the time left, at most 1h
    assert [(e["action_id"], e["value"], e["text"]["text"]) for e in buttons["elements"]] == [
        ("revoke_grant", str(grant_id), "I'm done"), ("extend_grant", str(grant_id), "Extend")]
    assert audit_lines(world)[-1].startswith(f"Grant {grant_id}: <@{ALICE}> has `ops-mfa` until ")
    # Every state change reached Alice: filed (waiting), approved, granted.
    waiting, approved, _ = (c.params["text"] for c in dms(world))
    assert "is waiting for approval" in waiting and f"was approved by <@{APPR1}>" in approved


def test_profile_has_no_mfa_serial_when_the_role_does_not_require_mfa(iam_world: SlackWorld) -> None:
    granted(iam_world, "ops-read", duration="10m")
    profile = json.dumps(dms(iam_world)[-1].get("blocks"))
    assert "mfa_serial" not in profile and "duration_seconds = 900" in profile  # never below STS's minimum
    assert "roleName=keyturn%2FOpsRead" in profile and "color=" not in profile


# ---- "I'm done" -------------------------------------------------------------------------------------
def test_im_done_revokes_now_and_the_dm_confirms_once_iam_has_no_statement(iam_world: SlackWorld) -> None:
    world = iam_world
    grant_id = granted(world, "ops-mfa")
    assert len(owned_statements("OpsMfa")) == 1
    world.click("revoke_grant", grant_id, ALICE, key="done", channel_id="D" + ALICE)
    assert world.reply("done") == "Removing your access now; I'll confirm when it is gone."
    grant = world.grant(grant_id)
    assert (grant.state, grant.end_reason, grant.ended_by) == ("ending", "revoked", ALICE)
    sync_all(world)
    assert world.grant(grant_id).state == "revoked" and owned_statements("OpsMfa") == []
    world.deliver()
    assert dms(world)[-1].params["text"] == "Your access to `ops-mfa` was revoked; IAM no longer lets you in."
    assert audit_lines(world)[-1] == (f"Grant {grant_id} of `ops-mfa` to <@{ALICE}> was revoked (removal verified)")
    world.click("revoke_grant", grant_id, ALICE, key="again")
    assert world.reply("again") == "This access has already ended."


def test_someone_elses_im_done_is_refused(iam_world: SlackWorld) -> None:
    grant_id = granted(iam_world, "ops-mfa")
    iam_world.click("revoke_grant", grant_id, BOB, key="bob")
    assert iam_world.reply("bob") == "Only the requester, the role's approvers or an admin can end this access."
    assert iam_world.grant(grant_id).state == "active" and iam_world.dispatch.syncs == []


def test_expiry_ends_access_and_tells_the_requester(iam_world: SlackWorld) -> None:
    world = iam_world
    grant_id = granted(world, "ops-read")
    assert sweep(world.shifted(hours=1, seconds=1)).expiring == [grant_id]
    sync_all(world)
    assert world.grant(grant_id).state == "expired" and owned_statements("OpsRead") == []
    world.deliver()
    assert dms(world)[-1].params["text"] == "Your access to `ops-read` expired; IAM no longer lets you in."
    assert f"Grant {grant_id} of `ops-read` to <@{ALICE}> expired" in audit_lines(world)[-1]


# ---- "Extend" -----------------------------------------------------------------------------------------
def test_extend_asks_for_approval_and_access_never_blinks(iam_world: SlackWorld) -> None:
    world = iam_world
    first = granted(world, "ops-read")
    old_expiry = world.grant(first).expires_at
    world.click("extend_grant", first, ALICE)
    view = world.fake.wait_for("views.open").get("view")
    assert view["callback_id"] == "extend_grant" and json.loads(view["private_metadata"]) == {"grant_id": first}
    resp = world.submit("extend_grant", {"duration": {"duration": "2h"}, "reason": {"reason": "still on it"}},
                        ALICE, view["private_metadata"])
    assert resp.status_code == 200 and resp.text == ""
    with world.ctx.store() as s:
        ext = s.query(AccessRequest).filter(AccessRequest.extends_grant_id == first).one()
    world.deliver()
    assert "*Duration:* 2h (extension)" in json.dumps(dms(world, APPR1)[-1].get("blocks"))
    world.click("approve_request", ext.id, APPR1)
    world.wait(lambda: world.request(ext.id).state == "approved", what="the extension's approval")
    with world.ctx.store() as s:
        second = s.query(Grant).filter(Grant.request_id == ext.id).one()
    assert int((second.expires_at - old_expiry).total_seconds()) == 7200  # the expiry moves by 2h
    assert world.grant(first).state == "active"
    sync_all(world)
    (statement,) = owned_statements("OpsRead")
    assert statement["Condition"]["DateLessThan"]["aws:CurrentTime"] == f"{second.expires_at:%Y-%m-%dT%H:%M:%SZ}"
    world.deliver()
    assert f"until <!date^{int(second.expires_at.timestamp())}^" in json.dumps(dms(world)[-1].get("blocks"))
    # The first grant's own end changes nothing in IAM, and Alice is not told her access is gone.
    sweep(world.shifted(hours=1, seconds=1))
    sync_all(world)
    assert world.grant(first).state == "expired" and world.grant(second.id).state == "active"
    assert len(owned_statements("OpsRead")) == 1
    world.deliver()
    assert all("no longer lets you in" not in c.params["text"] for c in dms(world))
    assert dms(world)[-1].params["text"] == (
        f"Your grant {first} of `ops-read` expired; you still have access until "
        f"<!date^{int(second.expires_at.timestamp())}^{{date_short_pretty}} at {{time}}|"
        f"{second.expires_at:%Y-%m-%d %H:%M} UTC> (grant {second.id}).")


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"duration": {"duration": "later"}, "reason": {"reason": "x"}}, "duration", "write it like 30m"),
    ({"duration": {"duration": "2d"}, "reason": {"reason": "x"}}, "duration", "allows at most 1d"),
])
def test_extension_form_errors_go_next_to_the_field(iam_world: SlackWorld, values: dict[str, Any],
                                                     field: str, words: str) -> None:
    first = granted(iam_world, "ops-read")
    body = iam_world.submit("extend_grant", values, ALICE, json.dumps({"grant_id": first})).json()
    assert body["response_action"] == "errors" and words in body["errors"][field]
    with iam_world.ctx.store() as s:
        assert s.query(AccessRequest).count() == 1


# ---- failures reach the requester and the audit channel ---------------------------------------------
def test_grant_and_revocation_failures_are_told_escaped(world: SlackWorld) -> None:
    grant_id = world.approve(world.file("ops-read"), APPR1)
    with world.ctx.store.begin() as s:
        s.get(Grant, grant_id).failure_reason = "AccessDenied <!channel>"  # type: ignore[union-attr]
    world.notifier.handle("grant.failed", grant_id=grant_id)
    world.notifier.handle("grant.revocation_failed", grant_id=grant_id)
    assert dms(world)[-1].params["text"] == \
        "Your access to `ops-read` could not be granted: AccessDenied &lt;!channel&gt;"
    failed, stuck = audit_lines(world)[-2:]
    assert failed.startswith(f":warning: Grant {grant_id} of `ops-read`") and "&lt;!channel&gt;" in failed
    assert stuck.startswith(f":rotating_light: Removing grant {grant_id}") and "<!channel>" not in stuck


# ---- App Home --------------------------------------------------------------------------------------
ROLES6 = [{"id": f"team-{n}", "name": f"Team {n}", "account": "sandbox", "role_name": f"Team{n}",
           "approvers": [APPR1], "require_reason": False} for n in range(1, 7)]


@pytest.fixture
def home_world(sqlite_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    with served_world(sqlite_url, redis_url, slack_fake, tmp_path, roles=[*CATALOG["roles"], *ROLES6]) as w:
        yield w


def test_app_home_shows_active_pending_and_the_last_five_roles(home_world: SlackWorld) -> None:
    world = home_world
    for n in range(1, 7):  # six past grants, oldest first
        world.approve(world.file(f"team-{n}"), APPR1)
    with world.ctx.store.begin() as s:
        for g in s.query(Grant).all():
            g.state = "expired"
    active = world.approve(world.file("ops-read", duration="2h"), APPR1)
    pending = world.file("ops-admin")
    world.dispatch.notes.clear()
    assert world.event({"type": "app_home_opened", "user": ALICE, "tab": "home"}).status_code == 200
    world.wait(lambda: world.notes("home.refresh"), what="the refresh")
    world.deliver()
    call = world.fake.wait_for("views.publish")
    assert call.params["user_id"] == ALICE
    view = call.get("view")
    assert view["type"] == "home"
    text = json.dumps(view["blocks"], ensure_ascii=False)
    assert re.search(r"\*Ops read-only\* \(`ops-read`\) in `sandbox`\\n(1h59m\d+s|2h) left, until <!date\^", text)
    assert f'"action_id": "revoke_grant", "value": "{active}"' in text
    assert f"#{pending} *Ops admin* (`ops-admin`) in `sandbox` for 1h" in text
    again = [b["accessory"]["value"] for b in view["blocks"]
             if b.get("accessory", {}).get("action_id") == "request_again"]
    assert again == ["ops-read", "team-6", "team-5", "team-4", "team-3"]  # newest first, five, distinct

    # "Request again" (from App Home: a view container, no response_url) opens the form pre-filled.
    world.click("request_again", "team-5", ALICE, view={"id": call.response["view"]["id"], "type": "home"})
    form = world.fake.wait_for("views.open").get("view")
    picker = form["blocks"][0]["element"]
    assert picker["initial_option"]["value"] == "team-5"


def test_app_home_when_there_is_nothing(home_world: SlackWorld) -> None:
    home_world.event({"type": "app_home_opened", "user": BOB, "tab": "home"})
    home_world.wait(lambda: home_world.notes("home.refresh"), what="the refresh")
    home_world.deliver()
    text = json.dumps(home_world.fake.wait_for("views.publish").get("view")["blocks"])
    assert "_No active access._" in text and "_Nothing pending._" in text and "Recently used" not in text


def test_an_open_app_home_follows_the_requesters_state_changes(home_world: SlackWorld) -> None:
    """Filing, the decision and the grant's end each republish the requester's Home, never anyone else's."""
    world = home_world

    def published_for(user: str) -> list[str]:
        return [json.dumps(c.get("view")["blocks"]) for c in world.fake.calls("views.publish")
                if c.params["user_id"] == user]

    pending = world.file("ops-admin")
    world.deliver()
    [home] = published_for(ALICE)
    assert f"#{pending} *Ops admin*" in home and "_No active access._" in home

    grant_id = world.approve(pending, APPR1, APPR2)
    assert grant_id is not None
    world.deliver()
    latest = published_for(ALICE)[-1]
    assert "_Nothing pending._" in latest  # the decision took it off the pending list
    assert published_for(APPR1) == [] and published_for(APPR2) == []

    # a Slack failure on the Home never fails (and so never retries, re-sending) the DM it follows
    world.fake.reset()
    world.fake.fail_next("views.publish", error="internal_error", times=5)
    second = world.file("ops-read")
    assert world.deliver() == ["request.filed"]  # did not raise: the Home's failure is only logged
    told = [c.params["text"] for c in world.fake.calls("chat.postMessage") if c.params.get("channel") == ALICE]
    assert told == [f"Your request #{second} for `ops-read` (1h) is waiting for approval."]
    assert [c.response["ok"] for c in world.fake.calls("views.publish")] == [False]  # tried once, not retried
