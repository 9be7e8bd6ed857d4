"""Block Kit builders as pure functions: what each view shows, Slack's limits, and escaping of every
piece of user text. No database, no HTTP: rows are built in memory.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from service.catalog import Catalog, parse_catalog
from service.slack import views
from service.slack.text import esc, seconds, slack_date
from service.store.models import AccessRequest, Grant
from tests.slack.conftest import ACCOUNT, ALICE, APPR1, CATALOG, MALLORY

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVIL = "<!channel> <@U0APPR02> <!subteam^S0X> <https://evil.example|SSO> & <b>"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(json.loads(json.dumps(CATALOG)))


def request(**overrides: Any) -> AccessRequest:
    values: dict[str, Any] = dict(id=7, role_id="ops-admin", requester=ALICE, team_id="T0TEAM001",
                                  principal_arn=f"arn:aws:iam::{ACCOUNT}:user/alice", duration_seconds=5400,
                                  reason="rotate keys", ticket=None, state="pending", created_at=NOW,
                                  decided_at=None, decided_by=None, decision_note=None, break_glass=False,
                                  extends_grant_id=None)
    values.update(overrides)
    return AccessRequest(**values)


def grant(role_id: str = "ops-mfa", left: timedelta = timedelta(hours=2), **overrides: Any) -> Grant:
    values: dict[str, Any] = dict(id=3, request_id=7, role_id=role_id, requester=ALICE,
                                  principal_arn=f"arn:aws:iam::{ACCOUNT}:user/alice", target_key="t", lease_key="l",
                                  starts_at=NOW, expires_at=NOW + left, state="active")
    values.update(overrides)
    return Grant(**values)


def dump(blocks: Any) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# ---- text helpers ------------------------------------------------------------------------------------
def test_esc_escapes_exactly_the_three_control_characters() -> None:
    assert esc(EVIL) == ("&lt;!channel&gt; &lt;@U0APPR02&gt; &lt;!subteam^S0X&gt; &lt;https://evil.example|SSO&gt; "
                         "&amp; &lt;b&gt;")
    assert esc("&lt;") == "&amp;lt;"  # already-escaped text cannot smuggle a raw < back in
    assert esc(None) == "" and esc("") == ""


def test_slack_date_is_the_readers_local_time_with_a_utc_fallback() -> None:
    assert slack_date(NOW) == f"<!date^{int(NOW.timestamp())}^{{date_short_pretty}} at {{time}}|2026-03-01 12:00 UTC>"
    assert seconds(5400) == "1h30m" and seconds(86400) == "1d"


# ---- the approvers' message ----------------------------------------------------------------------
def test_pending_message_shows_every_field_and_both_buttons(catalog: Catalog) -> None:
    text, blocks = views.approver_message(request(ticket="INC-9"), catalog, [APPR1])
    assert text == f"Access request #7 from <@{ALICE}> for ops-admin"
    body = dump(blocks)
    for part in ("*Requester:* <@U0ALICE01>", "*Role:* *Ops admin* (`ops-admin`) in `sandbox`",
                 "*Duration:* 1h30m", "*Reason:* rotate keys", "*Ticket:* INC-9", "Approvals: 1 of 2 — <@U0APPR01>"):
        assert part in body
    (row,) = [b for b in blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in row["elements"]] == ["approve_request", "deny_request"]
    assert all(e["text"]["type"] == "plain_text" for e in row["elements"])


def test_every_piece_of_user_text_is_escaped(catalog: Catalog) -> None:
    for state in ("pending", "denied"):
        req = request(reason=EVIL, ticket=EVIL, decision_note=EVIL, state=state, decided_at=NOW, decided_by=APPR1)
        _, blocks = views.approver_message(req, catalog, [])
        body = dump(blocks)
        assert body.count("&lt;!channel&gt;") == (2 if state == "pending" else 3)
        for raw in ("<!channel>", "<@U0APPR02>", "<!subteam", "<https://evil", "<b>"):
            assert raw not in body


@pytest.mark.parametrize(("state", "by", "line"), [
    ("approved", APPR1, ":white_check_mark: Approved by <@U0APPR01>"),
    ("denied", APPR1, ":no_entry: Denied by <@U0APPR01>"),
    ("cancelled", ALICE, ":wastebasket: Cancelled by <@U0ALICE01>"),
    ("timed_out", "keyturn", ":hourglass: Timed out by Keyturn"),
])
def test_decided_message_says_who_and_when_without_buttons(catalog: Catalog, state: str, by: str,
                                                           line: str) -> None:
    text, blocks = views.approver_message(request(state=state, decided_at=NOW, decided_by=by), catalog, [APPR1])
    assert text == f"Access request #7: {state}"
    assert not [b for b in blocks if b["type"] == "actions"]
    assert f"{line} {slack_date(NOW)}" in dump(blocks)


def test_break_glass_and_extension_are_marked(catalog: Catalog) -> None:
    req = request(state="approved", decided_at=NOW, decided_by=ALICE, break_glass=True, decision_note="down",
                  extends_grant_id=2)
    body = dump(views.approver_message(req, catalog, [])[1])
    assert ":rotating_light: *break-glass self-approval*" in body and "> down" in body
    assert "*Duration:* 1h30m (extension)" in body


def test_long_text_stays_within_slacks_section_limit(catalog: Catalog) -> None:
    _, blocks = views.approver_message(request(reason="<" * 5000), catalog, [])
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")


# ---- the grant DM --------------------------------------------------------------------------------
def test_granted_message_link_profile_and_buttons(catalog: Catalog) -> None:
    text, blocks = views.granted_message(grant("ops-mfa", timedelta(minutes=30)), catalog, NOW)
    assert text == "Access to Ops with MFA granted until 12:30 UTC"
    link, profile, buttons = blocks
    assert f"until {slack_date(NOW + timedelta(minutes=30))}" in link["text"]["text"]
    url = link["text"]["text"].split("<", 2)[2].split("|")[0]
    assert parse_qs(urlsplit(url).query) == {"account": [ACCOUNT], "roleName": ["keyturn/OpsMfa"],
                                             "displayName": ["Ops with MFA (sandbox)"], "color": ["FAD791"]}
    assert "mfa_serial = arn:aws:iam::123456789012:mfa/alice\nduration_seconds = 1800" in profile["text"]["text"]
    assert [e["action_id"] for e in buttons["elements"]] == ["revoke_grant", "extend_grant"]


@pytest.mark.parametrize(("left", "expected"), [(timedelta(minutes=5), 900), (timedelta(hours=3), 3600),
                                                (timedelta(minutes=45), 2700)])
def test_profile_duration_is_the_time_left_within_sts_bounds(catalog: Catalog, left: timedelta,
                                                             expected: int) -> None:
    role = catalog.roles["ops-read"]
    snippet = views.profile_snippet(role, grant("ops-read", left), NOW, None)
    assert snippet.splitlines() == [
        "[profile keyturn-ops-read]", f"role_arn = arn:aws:iam::{ACCOUNT}:role/keyturn/OpsRead",
        "source_profile = default", "role_session_name = alice", f"duration_seconds = {expected}"]


# ---- forms ---------------------------------------------------------------------------------------
def test_request_modal_offers_only_the_users_roles(catalog: Catalog) -> None:
    modal = views.request_modal(catalog, ALICE, role_id="ops-read")
    picker = modal["blocks"][0]["element"]
    assert [o["value"] for o in picker["options"]] == ["break-glass", "ops-admin", "ops-mfa", "ops-read"]
    assert picker["initial_option"]["value"] == "ops-read"
    assert all(len(o["text"]["text"]) <= 75 for o in picker["options"])
    assert "initial_option" not in views.request_modal(catalog, ALICE, role_id="nope")["blocks"][0]["element"]
    assert views.request_modal(catalog, MALLORY)["blocks"][0]["element"]["options"] == []


def test_reason_modals_carry_their_metadata(catalog: Catalog) -> None:
    deny = views.reason_modal("deny_request", "Deny request", "Reason", {"request_id": 7})
    assert json.loads(deny["private_metadata"]) == {"request_id": 7}
    assert [b["block_id"] for b in deny["blocks"]] == ["reason"] and deny["blocks"][0]["optional"] is True
    extend = views.reason_modal("extend_grant", "Extend access", "Why", {"grant_id": 3}, duration=True)
    assert [b["block_id"] for b in extend["blocks"]] == ["duration", "reason"]
    assert extend["blocks"][1]["optional"] is False  # an extension needs its reason
    assert all(len(m["title"]["text"]) <= 24 for m in (deny, extend))  # Slack's modal title limit


# ---- App Home ------------------------------------------------------------------------------------
def test_home_view_lists_active_pending_and_at_most_five_recent_roles(catalog: Catalog) -> None:
    view = views.home_view(catalog, NOW, [grant("ops-mfa", timedelta(minutes=90))], [request(id=9)],
                           ["ops-mfa", "ops-read", "ops-admin", "break-glass", "gone-role", "ops-read"])
    body = dump(view["blocks"])
    assert "*Ops with MFA* (`ops-mfa`) in `sandbox`\\n1h30m left, until <!date^" in body
    assert "#9 *Ops admin* (`ops-admin`) in `sandbox` for 1h30m" in body
    again = [b["accessory"]["value"] for b in view["blocks"]
             if b.get("accessory", {}).get("action_id") == "request_again"]
    assert again == ["ops-mfa", "ops-read", "ops-admin", "break-glass", "gone-role"]
    assert "`gone-role`" in body  # a role since removed from the catalogue is shown by id, escaped


def test_home_view_when_empty(catalog: Catalog) -> None:
    body = dump(views.home_view(catalog, NOW, [], [], [])["blocks"])
    assert "_No active access._" in body and "_Nothing pending._" in body and "Recently used" not in body


# ---- user text cannot pass for Keyturn's own lines -------------------------------------------------
FORGED = "fixing INC-1\n*Duration:* 15m\r\n:white_check_mark: Approved by <@U0APPR01>\u2028*Role:* read-only\n\n"
OWN_LINES = ("*Requester:*", "*Role:*", "*Duration:*", "*Reason:*", "*Ticket:*", ":key: Access request",
             ":no_entry: Denied by")


def _lines(blocks: Any) -> list[str]:
    return [line for b in blocks if b["type"] == "section" for line in b["text"]["text"].splitlines()]


@pytest.mark.parametrize("state", ["pending", "denied"])
def test_line_breaks_in_user_text_cannot_forge_a_field(catalog: Catalog, state: str) -> None:
    req = request(reason=FORGED, ticket="INC-2\n*Duration:* 1m", decision_note="no\n*Role:* x", state=state,
                  decided_at=NOW, decided_by=APPR1)
    lines = _lines(views.approver_message(req, catalog, [])[1])
    # Every line is either one of Keyturn's own or quoted user text.
    assert all(line.startswith(OWN_LINES) or line.startswith("> ") for line in lines), lines
    assert [line for line in lines if line.startswith("*Duration:*")] == ["*Duration:* 1h30m"]
    assert [line for line in lines if line.startswith("*Role:*")] == ["*Role:* *Ops admin* (`ops-admin`) in `sandbox`"]
    assert not [line for line in lines if line.startswith(":white_check_mark:")]
    assert "> *Duration:* 15m" in lines and "> :white_check_mark: Approved by &lt;@U0APPR01&gt;" in lines
    assert "*Ticket:* INC-2 *Duration:* 1m" in lines  # folded onto its own line
    if state == "denied":
        assert "> no" in lines and "> *Role:* x" in lines


def test_a_one_line_reason_reads_as_before(catalog: Catalog) -> None:
    lines = _lines(views.approver_message(request(reason="  rotate keys "), catalog, [])[1])
    assert lines[-1] == "*Reason:* rotate keys"
    assert _lines(views.approver_message(request(reason=" \n "), catalog, [])[1])[-1] == "*Reason:* _none given_"
