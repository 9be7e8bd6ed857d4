"""/access over signed HTTP: the form, filing directly, list, help, and errors that say what is allowed.

Every request is a real form-encoded slash command (or view_submission) signed with the v0 scheme and
POSTed to the served Flask app; answers are checked on the wire, rows in the database.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from service.store.models import AccessRequest, AuditEvent
from tests.slack.conftest import ALICE, BOB, MALLORY, SlackWorld

ACK_BUDGET = 3.0  # Slack gives up on an acknowledgement after 3 s


def ephemeral(resp: Any) -> str:
    """The ephemeral text riding on a slash command's acknowledgement."""
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["response_type"] == "ephemeral", body
    return str(body["text"])


def answered(world: SlackWorld, resp: Any, key: str = "cmd") -> str:
    """What the user ends up reading: the acknowledgement's own text or, where that is a placeholder
    ("Filing…", "Looking up…"), the worker's answer that replaces it on the command's response_url."""
    text = ephemeral(resp)
    if not text.endswith("…"):
        return text
    world.wait(lambda: world.replies(key), what="the answer on the response_url")
    reply = world.replies(key)[-1].params
    assert reply["response_type"] == "ephemeral" and reply["replace_original"] is True, reply
    return str(reply["text"])


def timed_command(world: SlackWorld, text: str, **kwargs: Any) -> Any:
    started = time.monotonic()
    resp = world.command(text, **kwargs)
    assert time.monotonic() - started < ACK_BUDGET
    return resp


# ---- /access alone: the form ------------------------------------------------------------------------
def test_bare_access_acks_then_opens_the_form_with_the_users_roles(world: SlackWorld) -> None:
    resp = timed_command(world, "")
    assert resp.status_code == 200 and resp.text == ""  # an empty ack: nothing shown in the channel
    call = world.fake.wait_for("views.open")
    view = call.get("view")
    assert call.params["trigger_id"]  # the trigger from the signed command
    assert view["callback_id"] == "request_access" and view["type"] == "modal"
    blocks = {b["block_id"]: b for b in view["blocks"]}
    assert set(blocks) == {"role", "duration", "reason", "ticket"}
    picker = blocks["role"]["element"]
    assert picker["type"] == "static_select"
    assert [o["value"] for o in picker["options"]] == sorted(r for r in world.ctx.catalog.roles)
    assert all(o["text"]["type"] == "plain_text" for o in picker["options"])
    assert "longest: 1d" in blocks["duration"]["hint"]["text"]
    assert world.count(AccessRequest) == 0  # nothing filed by opening the form


def test_bare_access_from_a_user_without_a_principal_is_told_instead_of_an_empty_form(
    lite: SlackWorld,
) -> None:
    """Slack rejects a static_select with no options; an unmapped user gets an explanation."""
    text = ephemeral(timed_command(lite, "", user=MALLORY))
    assert "no AWS principal" in text
    assert lite.fake.calls("views.open") == []


def test_bare_access_still_acks_in_time_when_slack_is_slow(lite: SlackWorld) -> None:
    """views.open happens after the ack: a slow Slack API never makes the command time out."""
    lite.fake.fail_next("views.open", status=500, delay=3.5)
    started = time.monotonic()
    resp = lite.command("")
    assert resp.status_code == 200
    assert time.monotonic() - started < 2.0
    # The failure, once Slack answers, is told to the user ephemerally with an id to quote.
    assert "Something went wrong (error id" in lite.reply("cmd", timeout=10)


# ---- /access help and /access list ------------------------------------------------------------------
@pytest.mark.parametrize("text", ["help", "HELP", "help me"])
def test_help(lite: SlackWorld, text: str) -> None:
    answer = ephemeral(timed_command(lite, text))
    for usage in ("`/access` opens a form", "`/access ROLE DURATION REASON…`", "`/access list`", "`/access help`"):
        assert usage in answer


def test_list_shows_only_my_pending_and_active_access(world: SlackWorld) -> None:
    assert answered(world, world.command("list")) == "*Active access*\n_none_\n*Pending requests*\n_none_"
    mine = world.file("ops-read", duration="2h")
    granted = world.file("ops-mfa")
    grant_id = world.approve(granted, "U0APPR01")
    world.file("ops-read", user=BOB)  # someone else's
    answer = answered(world, timed_command(world, "list", key="list2"), key="list2")
    active, pending = answer.split("*Pending requests*")
    assert "`ops-mfa` until <!date^" in active and f"(grant {grant_id})" in active
    assert f"#{mine} `ops-read` for 2h" in pending
    assert answer.count("•") == 2


# ---- /access ROLE DURATION REASON… --------------------------------------------------------------------
def test_files_directly_and_records_who_from_the_signed_body(world: SlackWorld) -> None:
    ack = timed_command(world, "ops-admin 90m fixing INC-42 in eu-west-1")
    assert ephemeral(ack) == "Filing your request for `ops-admin` (1h30m)…"
    answer = answered(world, ack)
    with world.ctx.store() as s:
        (req,) = s.query(AccessRequest).all()
    assert answer == f"Request #{req.id} for `ops-admin` is sent to the approvers."
    assert (req.role_id, req.requester, req.team_id) == ("ops-admin", ALICE, "T0TEAM001")
    assert (req.duration_seconds, req.reason, req.state) == (5400, "fixing INC-42 in eu-west-1", "pending")
    assert [a.action for a in world.audit()] == ["request.filed"]
    assert world.notes() == [("request.filed", {"request_id": req.id})]


def test_reason_is_optional_where_the_role_allows(world: SlackWorld) -> None:
    assert "is sent to the approvers" in answered(world, world.command("ops-read 2h"))
    with world.ctx.store() as s:
        assert s.query(AccessRequest).one().reason is None


@pytest.mark.parametrize(("text", "expected"), [
    ("prod-root 1h because", "There is no role `prod-root`. Roles you can request: `break-glass`, `ops-admin`, "
                             "`ops-mfa`, `ops-read`."),
    ("ops-admin soon because", "`soon` is not a duration: write 30m, 2h or 1d (at most 4h for ops-admin)."),
    ("ops-admin 0m because", "`0m` is not a duration: write 30m, 2h or 1d (at most 4h for ops-admin)."),
    ("ops-admin", "Say how long, e.g. `/access ops-admin 1h fixing INC-123` (at most 4h)."),
    ("ops-admin 5h because", "ops-admin allows at most 4h."),
    ("ops-admin 1h", "ops-admin needs a reason, e.g. `ops-admin 1h fixing INC-123`."),
    ("ops-admin 1h    ", "ops-admin needs a reason, e.g. `ops-admin 1h fixing INC-123`."),
])
def test_bad_input_gets_an_ephemeral_error_saying_what_is_allowed(lite: SlackWorld, text: str,
                                                                  expected: str) -> None:
    assert answered(lite, timed_command(lite, text)) == expected
    assert lite.count(AccessRequest) == 0 and lite.count(AuditEvent) == 0
    assert lite.notes() == []


def test_a_role_id_is_never_an_arn_and_user_text_is_escaped_in_errors(lite: SlackWorld) -> None:
    answer = ephemeral(lite.command("arn:aws:iam::123456789012:role/<!channel> 1h x"))
    assert answer.startswith("There is no role `arn:aws:iam::123456789012:role/&lt;!channel&gt;`")
    assert "<!channel>" not in answer
    assert lite.count(AccessRequest) == 0


def test_unmapped_user_cannot_file(lite: SlackWorld) -> None:
    answer = answered(lite, lite.command("ops-read 1h", user=MALLORY))
    assert "no AWS principal mapped" in answer
    assert lite.count(AccessRequest) == 0


# ---- the form's submission ------------------------------------------------------------------------
def form(role: str | None, duration: str, reason: str | None = None, ticket: str | None = None) -> dict[str, Any]:
    picked = {"type": "static_select", "selected_option": (
        {"text": {"type": "plain_text", "text": role}, "value": role} if role else None)}
    return {"role": {"role": picked}, "duration": {"duration": duration},
            "reason": {"reason": reason}, "ticket": {"ticket": ticket}}


def test_form_submission_files_the_request_with_its_ticket(world: SlackWorld) -> None:
    resp = world.submit("request_access", form("ops-admin", "2h", "deploy hotfix", "INC-7"), ALICE)
    assert resp.status_code == 200 and resp.text == ""  # the modal closes
    with world.ctx.store() as s:
        req = s.query(AccessRequest).one()
    assert (req.role_id, req.requester, req.duration_seconds) == ("ops-admin", ALICE, 7200)
    assert (req.reason, req.ticket) == ("deploy hotfix", "INC-7")
    assert world.notes() == [("request.filed", {"request_id": req.id})]


@pytest.mark.parametrize(("values", "field", "words"), [
    (form("ops-admin", "two hours", "x"), "duration", "write it like 30m, 2h or 1d"),
    (form("ops-admin", "6h", "x"), "duration", "ops-admin allows at most 4h"),
    (form("ops-admin", "1h", None), "reason", "ops-admin needs a reason"),
    (form("ops-admin", "1h", "   "), "reason", "ops-admin needs a reason"),
    (form(None, "1h", "x"), "role", "There is no role"),
])
def test_form_errors_go_back_next_to_the_field(lite: SlackWorld, values: dict[str, Any], field: str,
                                               words: str) -> None:
    resp = lite.submit("request_access", values, ALICE)
    assert resp.status_code == 200
    body = json.loads(resp.text)
    assert body["response_action"] == "errors" and set(body["errors"]) == {field}
    assert words in body["errors"][field]
    assert lite.count(AccessRequest) == 0


def test_a_tampered_form_cannot_pick_a_role_outside_the_catalogue(lite: SlackWorld) -> None:
    values = form("arn:aws:iam::123456789012:role/Admin", "1h", "x")
    body = json.loads(lite.submit("request_access", values, ALICE).text)
    assert body["response_action"] == "errors" and "There is no role" in body["errors"]["role"]
    assert lite.count(AccessRequest) == 0


# ---- bad values: a clear reason next to each field, never a stack trace -----------------------------
def test_a_huge_duration_in_the_command_is_told_the_roles_maximum(lite: SlackWorld) -> None:
    answer = answered(lite, lite.command("ops-admin 99999999999d fixing INC-1"))
    assert answer == "That is longer than ops-admin allows: at most 4h."
    answer = answered(lite, lite.command("ops-admin " + "9" * 5000 + "d fixing"))
    assert "is not a duration" in answer and len(answer) < 300
    assert lite.count(AccessRequest) == 0


def test_the_form_puts_every_bad_value_next_to_its_field(world: SlackWorld) -> None:
    values = form("ops-admin", "99999999999d", "r" * 2001, "T" * 300)
    body = json.loads(world.submit("request_access", values, ALICE).text)
    assert body["response_action"] == "errors"
    assert body["errors"] == {"duration": "That is longer than ops-admin allows: at most 4h.",
                              "reason": "At most 2000 characters, please (this is 2001).",
                              "ticket": "At most 256 characters, please (this is 300)."}
    body = json.loads(world.submit("request_access", form("ops-admin", "1h", "x", "INC-1\nINC-2"), ALICE).text)
    assert body["errors"] == {"ticket": "Remove the control characters and line breaks."}
    assert world.count(AccessRequest) == 0
    # At the caps exactly it files (on PostgreSQL a longer ticket used to fail the insert itself).
    resp = world.submit("request_access", form("ops-admin", "4h", "r" * 2000, "T" * 256), ALICE)
    assert resp.status_code == 200 and resp.text == ""
    assert world.count(AccessRequest) == 1


def test_the_forms_carry_the_caps(world: SlackWorld) -> None:
    from service.slack import views

    modal = views.request_modal(world.ctx.catalog, ALICE)
    caps = {b["block_id"]: b["element"].get("max_length") for b in modal["blocks"]}
    assert caps == {"role": None, "duration": 32, "reason": 2000, "ticket": 256}
    extend = views.reason_modal("extend_grant", "Extend", "Why", {"grant_id": 1}, duration=True)
    assert [b["element"]["max_length"] for b in extend["blocks"]] == [32, 2000]
