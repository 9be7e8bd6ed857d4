"""The security rules, each over signed HTTP on SQLite and PostgreSQL: signatures (401 and nothing
changes), identity only from the signed user and team, non-approvers and self-approval refused and
audited, break-glass with a reason announced loudly, no mrkdwn injection, Slack retries de-duplicated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests

from service.store.models import AccessRequest, Approval, AuditEvent, Grant, ProcessedEvent, SlackMessage
from tests.slack.conftest import ALICE, APPR1, APPROVERS_CHANNEL, AUDIT_CHANNEL, BOB, MALLORY, SlackWorld
from tests.support.slack_signing import (
    DEFAULT_SECRET,
    FORM,
    JSON,
    block_actions_body,
    event_callback_body,
    sign,
    slash_command_body,
    view_submission_body,
)

TABLES = (AccessRequest, Approval, Grant, AuditEvent, ProcessedEvent, SlackMessage)


def snapshot(world: SlackWorld) -> dict[str, int]:
    return {m.__tablename__: world.count(m) for m in TABLES}


def send(world: SlackWorld, body: str, content_type: str, headers: dict[str, str]) -> requests.Response:
    return requests.post(world.url, data=body.encode(), headers={"Content-Type": content_type, **headers},
                         timeout=10)


def good(body: str, age: int = 0) -> dict[str, str]:
    ts = str(int(time.time()) - age)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(DEFAULT_SECRET, ts, body)}


BAD_HEADERS: dict[str, Callable[[str], dict[str, str]]] = {
    "wrong secret": lambda b: {"X-Slack-Request-Timestamp": str(int(time.time())),
                               "X-Slack-Signature": sign("not-the-secret", int(time.time()), b)},
    "no signature": lambda b: {"X-Slack-Request-Timestamp": str(int(time.time()))},
    "no timestamp": lambda b: {"X-Slack-Signature": good(b)["X-Slack-Signature"]},
    "no headers": lambda b: {},
    "stale (5m01s)": lambda b: good(b, age=301),
    # 10 s of margin: the server checks a moment after signing, which brings a future stamp closer to now
    # (with 1 s of margin a loaded machine let it through).
    "from the future (5m10s)": lambda b: good(b, age=-310),
    "signed for another body": lambda b: good(b + "&x=1"),
    "garbage signature": lambda b: {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=00"},
}


def bodies(rid: int) -> dict[str, tuple[str, str]]:
    return {
        "slash command": (slash_command_body(text="ops-read 1h", user_id=ALICE), FORM),
        "approve click": (block_actions_body(APPR1, action_id="approve_request", value=str(rid)), FORM),
        "deny submission": (view_submission_body(APPR1, callback_id="deny_request",
                                                 private_metadata=json.dumps({"request_id": rid})), FORM),
        "app_home_opened": (event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "home"}), JSON),
    }


# ---- signatures ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["slash command", "approve click", "deny submission", "app_home_opened"])
def test_bad_missing_or_stale_signatures_get_401_and_change_nothing(world: SlackWorld, kind: str) -> None:
    rid = world.file("ops-read", user=BOB)
    world.dispatch.notes.clear()
    before, calls_before = snapshot(world), len(world.fake.calls())
    body, ctype = bodies(rid)[kind]
    for name, headers in BAD_HEADERS.items():
        resp = send(world, body, ctype, headers(body))
        assert resp.status_code == 401, name
    time.sleep(0.3)  # a listener would run after the response: give one the chance to (wrongly) act
    assert snapshot(world) == before
    assert world.dispatch.notes == [] and world.dispatch.syncs == []
    assert len(world.fake.calls()) == calls_before  # no Slack call either
    assert world.request(rid).state == "pending"
    # The same body, correctly signed 4m50s ago, is accepted: the rule is the signature, not the shape.
    assert send(world, body, ctype, good(body, age=290)).status_code == 200


# ---- identity comes from the signed payload only ------------------------------------------------
def test_names_text_and_button_values_never_stand_in_for_identity(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    # Mallory's click dressed up as APPR1: username, message text and button label all say APPR1.
    body = block_actions_body(MALLORY, action_id="approve_request", value=str(rid), user_name="u0appr01",
                              button_text="Approve as <@U0APPR01>", response_url=world.fake.response_url("m"),
                              message={"type": "message", "text": f"approver: {APPR1}", "user": APPR1,
                                       "ts": "1.000100", "blocks": []})
    assert world.post(body).status_code == 200
    assert world.reply("m") == "You are not an approver for this role."
    assert world.count(Approval) == 0 and world.request(rid).state == "pending"
    (refusal,) = world.audit("vote.refused")
    assert (refusal.actor, refusal.request_id, (refusal.detail or {})["reason"]) == (MALLORY, rid, "not_an_approver")


def test_a_click_from_another_workspace_is_refused_before_anything_is_queued(world: SlackWorld) -> None:
    rid = world.file("ops-admin")  # filed in T0TEAM001
    world.click("approve_request", rid, APPR1, key="t", team_id="T0EVILCORP")
    assert world.reply("t") == "This action came from a different Slack workspace."
    assert world.count(Approval) == 0 and world.dispatch.interactions == []  # more in test_workspace.py


@pytest.mark.parametrize("action", ["approve_request", "deny_request"])
def test_a_non_approvers_click_is_refused_ephemerally_audited_and_announced(world: SlackWorld,
                                                                            action: str) -> None:
    rid = world.file("ops-admin")
    world.deliver()
    world.click(action, rid, BOB, key="bob")
    assert world.reply("bob") == "You are not an approver for this role."
    assert world.fake.calls("views.open") == []  # not even the deny form
    assert world.request(rid).state == "pending" and world.count(Approval) == 0
    (refusal,) = world.audit("vote.refused")
    assert (refusal.actor, (refusal.detail or {})["reason"]) == (BOB, "not_an_approver")
    world.wait(lambda: world.notes("vote.refused"), what="the refusal note")
    world.deliver()
    assert [c.params["text"] for c in world.fake.calls("chat.postMessage") if c.params["channel"] == AUDIT_CHANNEL] \
        == [f":no_entry_sign: <@{BOB}> tried to decide request #{rid}: refused (not_an_approver)"]


def test_a_forged_deny_form_from_a_non_approver_is_refused(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.submit("deny_request", {"reason": {"reason": "spite"}}, MALLORY, json.dumps({"request_id": rid}))
    refusal = world.wait(lambda: world.audit("vote.refused"), what="the audited refusal")[0]
    assert refusal.actor == MALLORY and world.request(rid).state == "pending"
    dm = world.fake.wait_for("chat.postMessage", lambda c: c.params["channel"] == MALLORY)
    assert dm.params["text"] == "You are not an approver for this role."  # no response_url on a form: a DM


# ---- self-approval and break-glass --------------------------------------------------------------
def test_self_approval_is_refused_and_audited(world: SlackWorld) -> None:
    rid = world.file("ops-read", user=ALICE)  # Alice approves ops-read, but not her own requests
    world.click("approve_request", rid, ALICE, key="self")
    assert world.reply("self") == "You cannot approve your own request."
    assert world.fake.calls("views.open") == []  # no break-glass form on a role without it
    assert world.request(rid).state == "pending" and world.count(Grant) == 0
    (refusal,) = world.audit("vote.refused")
    assert (refusal.actor, (refusal.detail or {})["reason"]) == (ALICE, "self_approval")


def test_break_glass_needs_a_reason_and_is_announced_loudly(world: SlackWorld) -> None:
    rid = world.file("break-glass", user=ALICE, reason="prod is down")
    world.deliver()
    world.click("approve_request", rid, ALICE)
    view = world.fake.wait_for("views.open").get("view")
    assert view["callback_id"] == "break_glass" and json.loads(view["private_metadata"]) == {"request_id": rid}
    assert world.count(Approval) == 0  # the click alone decides nothing

    for empty in (None, "   "):
        resp = world.submit("break_glass", {"reason": {"reason": empty}}, ALICE, view["private_metadata"])
        assert resp.json() == {"response_action": "errors",
                               "errors": {"reason": "Break-glass self-approval needs a reason."}}
    assert world.count(Approval) == 0 and world.request(rid).state == "pending"

    resp = world.submit("break_glass", {"reason": {"reason": "<!here> pager storm, INC-9"}}, ALICE,
                        view["private_metadata"])
    assert resp.status_code == 200 and resp.text == ""
    world.wait(lambda: world.request(rid).state == "approved", what="the break-glass approval")
    req = world.request(rid)
    assert (req.break_glass, req.decided_by, req.decision_note) == (True, ALICE, "<!here> pager storm, INC-9")
    assert world.count(Grant) == 1
    assert [(e.detail or {}).get("break_glass") for e in world.audit("request.approved")] == [True]
    world.wait(lambda: world.notes("request.decided"), what="the decision note")
    world.deliver()
    (alarm,) = [c for c in world.fake.calls("chat.postMessage") if c.params["channel"] == AUDIT_CHANNEL]
    assert alarm.params["text"].startswith(":rotating_light: *BREAK-GLASS* self-approval: ")
    assert "&lt;!here&gt; pager storm" in alarm.params["text"] and "<!here>" not in alarm.params["text"]
    final = world.fake.calls("chat.update")[-1]
    assert ":rotating_light: *break-glass self-approval*" in json.dumps(final.get("blocks"))


# ---- escaping: no <!channel>, mentions or links through user text --------------------------------
INJECTION = "<!channel> ping <@U0APPR02> <!subteam^S0ADMINS> <https://evil.example/login|SSO expired> & co"


def test_user_text_cannot_inject_mentions_or_links(world: SlackWorld) -> None:
    world.command(f"ops-admin 1h {INJECTION}")
    rid = world.notes("request.filed")[0][1]["request_id"]
    world.deliver()
    world.submit("deny_request", {"reason": {"reason": INJECTION}}, APPR1, json.dumps({"request_id": rid}))
    world.wait(lambda: world.notes("request.decided"), what="the denial")
    world.deliver()
    approver = [c for c in world.fake.calls() if c.params.get("channel") == APPROVERS_CHANNEL]
    assert [c.method for c in approver] == ["chat.postMessage", "chat.update"]
    for call in approver:
        text = json.dumps(call.get("blocks"))
        assert "&lt;!channel&gt; ping &lt;@U0APPR02&gt;" in text
        assert "&lt;https://evil.example/login|SSO expired&gt; &amp; co" in text
    sent = [c for c in world.fake.calls() if c.method in ("chat.postMessage", "chat.update")]
    assert len(sent) >= 5  # approvers, requester (waiting, denied), the update, the audit channel
    for call in sent:
        everything = call.params.get("text", "") + json.dumps(call.get("blocks"))
        for raw in ("<!channel>", "<@U0APPR02>", "<!subteam^", "<https://evil.example"):
            assert raw not in everything, (call.method, call.params.get("channel"), raw)


# ---- Slack retries of events ---------------------------------------------------------------------------
def test_event_retries_are_deduplicated(world: SlackWorld) -> None:
    body = event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "home", "channel": "D0HOME"})
    assert world.post(body, JSON).status_code == 200
    world.wait(lambda: world.notes("home.refresh"), what="the first home refresh")
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    for _ in range(2):
        assert world.post(body, JSON, headers=retry).status_code == 200
    time.sleep(0.5)  # the retries' listeners ran (or would have) by now
    assert world.notes() == [("home.refresh", {"user_id": ALICE})]
    assert world.count(ProcessedEvent) == 1
    # A new event id is a new delivery; the Messages tab is ignored.
    world.post(event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "home"}), JSON)
    world.post(event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "messages"}), JSON)
    world.wait(lambda: len(world.notes("home.refresh")) == 2, what="the second refresh")
    time.sleep(0.3)
    assert len(world.notes("home.refresh")) == 2


def test_unsigned_retries_are_still_refused(world: SlackWorld) -> None:
    body = event_callback_body({"type": "app_home_opened", "user": ALICE, "tab": "home"})
    resp = send(world, body, JSON, {"X-Slack-Retry-Num": "1", **BAD_HEADERS["wrong secret"](body)})
    assert resp.status_code == 401
    time.sleep(0.2)
    assert world.count(ProcessedEvent) == 0 and world.notes() == []
