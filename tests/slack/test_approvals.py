"""The approvers' side over signed HTTP: the message in the approvers' channel (or DMs), Approve and
Deny with quorum progress updated in place, the decided message without buttons, timeouts, the
requester told at every step and the audit channel told of every decision. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from service.core.states import RequestState
from service.operations.sweep import sweep
from service.store.models import Approval, Grant, SlackMessage
from tests.slack.conftest import (
    ALICE,
    APPR1,
    APPR2,
    APPROVERS_CHANNEL,
    AUDIT_CHANNEL,
    BOB,
    SlackWorld,
)
from tests.support.slack_fake import SlackCall


def blocks_text(call: SlackCall) -> str:
    return json.dumps(call.get("blocks"), ensure_ascii=False)


def actions(call: SlackCall) -> list[dict[str, Any]]:
    return [b for b in call.get("blocks") if b["type"] == "actions"]


def posted(world: SlackWorld, channel: str) -> list[SlackCall]:
    return [c for c in world.fake.calls("chat.postMessage") if c.params["channel"] == channel]


def updates(world: SlackWorld, request_id: int) -> list[SlackCall]:
    return [c for c in world.fake.calls("chat.update") if f"request #{request_id}" in c.params["text"]]


def wait_decided(world: SlackWorld, request_id: int) -> str:
    def state() -> str | None:
        now = world.request(request_id).state
        return None if now == "pending" else now

    return str(world.wait(state, what=f"request {request_id} to be decided"))


def file_from_form(world: SlackWorld, role: str, duration: str, reason: str, ticket: str) -> int:
    picked = {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": role},
                                                            "value": role}}
    world.submit("request_access", {"role": {"role": picked}, "duration": {"duration": duration},
                                    "reason": {"reason": reason}, "ticket": {"ticket": ticket}}, ALICE)
    ((_, ids),) = world.notes("request.filed")
    return int(ids["request_id"])


# ---- the approvers' message -------------------------------------------------------------------------
def test_request_posts_to_the_approvers_channel_with_every_detail_and_buttons(world: SlackWorld) -> None:
    rid = file_from_form(world, "ops-admin", "90m", "rotate the KMS key", "INC-7")
    assert world.deliver() == ["request.filed"]
    (msg,) = posted(world, APPROVERS_CHANNEL)
    text = blocks_text(msg)
    for part in (f"Access request #{rid}", "*Requester:* <@U0ALICE01>", "*Role:* *Ops admin* (`ops-admin`)",
                 "in `sandbox`", "*Duration:* 1h30m", "*Reason:* rotate the KMS key", "*Ticket:* INC-7",
                 "Approvals: 0 of 2"):
        assert part in text, part
    (row,) = actions(msg)
    assert row["block_id"] == f"decide:{rid}"
    assert [(e["action_id"], e["value"], e.get("style"), e["text"]["text"]) for e in row["elements"]] == [
        ("approve_request", str(rid), "primary", "Approve"), ("deny_request", str(rid), "danger", "Deny")]
    assert msg.params["text"] == f"Access request #{rid} from <@U0ALICE01> for ops-admin"  # notification text
    with world.ctx.store() as s:
        (stored,) = s.query(SlackMessage).all()
    assert (stored.request_id, stored.channel, stored.ts) == (rid, APPROVERS_CHANNEL, msg.response["ts"])
    # The requester hears that it is waiting.
    (dm,) = posted(world, ALICE)
    assert dm.params["text"] == f"Your request #{rid} for `ops-admin` (1h30m) is waiting for approval."


def test_without_a_channel_each_approver_gets_a_dm_but_never_the_requester(world: SlackWorld) -> None:
    by_bob = world.file("ops-read", user=BOB)
    by_alice = world.file("ops-read", user=ALICE)  # Alice is one of the role's approvers
    world.deliver()
    asked = sorted(c.params["channel"] for c in world.fake.calls("chat.postMessage") if actions(c))
    assert asked == [ALICE, APPR1, APPR1]
    with world.ctx.store() as s:
        rows = {(m.request_id, m.channel) for m in s.query(SlackMessage).all()}
    assert rows == {(by_bob, "D" + ALICE), (by_bob, "D" + APPR1), (by_alice, "D" + APPR1)}


def test_a_retried_filing_notification_does_not_post_twice(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.notifier.handle("request.filed", request_id=rid)
    world.notifier.handle("request.filed", request_id=rid)  # the task ran again (acks_late redelivery)
    assert len(posted(world, APPROVERS_CHANNEL)) == 1
    waiting = [c.params["text"] for c in posted(world, ALICE)]
    assert waiting == [f"Your request #{rid} for `ops-admin` (1h) is waiting for approval."]


def slack_refuses(world: SlackWorld, channel: str, answer: dict[str, Any], times: int) -> list[SlackCall]:
    """chat.postMessage to `channel` answers `answer` the first `times` times; other posts succeed."""
    refused: list[SlackCall] = []

    def handler(call: SlackCall) -> dict[str, Any]:
        to = call.params["channel"]
        if to == channel and len(refused) < times:
            refused.append(call)
            return dict(answer)
        return {"ok": True, "channel": "D" + to if to[:1] == "U" else to, "ts": f"{len(world.fake.calls())}.0"}

    world.fake.on("chat.postMessage", handler)
    return refused


def denied(world: SlackWorld) -> int:
    rid = world.file("ops-admin")
    world.deliver()
    world.submit("deny_request", {"reason": {"reason": None}}, APPR1, json.dumps({"request_id": rid}))
    assert wait_decided(world, rid) == "denied"
    return rid


def test_a_decision_notification_retried_after_failing_halfway_tells_each_once(world: SlackWorld) -> None:
    from slack_sdk.errors import SlackApiError

    rid = denied(world)
    slack_refuses(world, AUDIT_CHANNEL, {"_status": 500, "ok": False, "error": "internal_error"}, times=1)
    with pytest.raises(SlackApiError) as failed:
        world.deliver()  # the requester's DM went out, then the audit post failed
    assert failed.value.response.status_code == 500  # a 5xx: keyturn.notify retries the task (workers/tasks.py)
    world.notifier.handle("request.decided", request_id=rid)  # the retry
    world.notifier.handle("request.decided", request_id=rid)  # and a redelivery after it
    dms = [c.params["text"] for c in posted(world, ALICE) if "was denied" in c.params["text"]]
    assert dms == [f"Your request #{rid} for `ops-admin` was denied by <@U0APPR01>."]
    audits = [c.status for c in posted(world, AUDIT_CHANNEL) if "denied" in c.params["text"]]
    assert audits == [500, 200]  # failed once, then sent once


def test_a_dm_slack_refuses_for_good_does_not_cost_the_audit_channel_its_line(world: SlackWorld) -> None:
    from slack_sdk.errors import SlackApiError

    rid = denied(world)
    refused = slack_refuses(world, ALICE, {"ok": False, "error": "user_not_found"}, times=99)  # she has left
    with pytest.raises(SlackApiError):
        world.deliver()  # the task still hears of the failure (and logs it as permanent)
    assert len(refused) == 1
    (audit,) = [c for c in posted(world, AUDIT_CHANNEL) if f"Request #{rid}" in c.params["text"]]
    assert audit.status == 200 and "denied by <@U0APPR01>" in audit.params["text"]


def test_a_notice_whose_record_cannot_be_written_is_still_sent(world: SlackWorld) -> None:
    from sqlalchemy import text

    with world.ctx.store.begin() as session:
        session.execute(text("DROP TABLE processed_events"))  # the database fails on every record of a notice
    rid = world.file("ops-admin")
    world.deliver()
    waiting = [c.params["text"] for c in posted(world, ALICE)]
    assert waiting == [f"Your request #{rid} for `ops-admin` (1h) is waiting for approval."]
    assert len(posted(world, APPROVERS_CHANNEL)) == 1


def test_grant_notices_handled_again_are_not_sent_again(world: SlackWorld) -> None:
    grant_id = world.approve(world.file("ops-admin"), APPR1, APPR2)
    assert grant_id is not None
    world.deliver()
    before = {ch: len(posted(world, ch)) for ch in (ALICE, AUDIT_CHANNEL)}
    for event in ("grant.active", "grant.ended", "grant.active", "grant.ended"):  # each redelivered once
        world.notifier.handle(event, grant_id=grant_id)
    sent = {ch: [c.params["text"] for c in posted(world, ch)[before[ch]:]] for ch in (ALICE, AUDIT_CHANNEL)}
    assert len(sent[ALICE]) == 2 and sent[ALICE][0].startswith("Access to Ops admin granted until")
    assert "IAM no longer lets you in" in sent[ALICE][1]
    assert len(sent[AUDIT_CHANNEL]) == 2 and sent[AUDIT_CHANNEL][0].startswith(f"Grant {grant_id}: <@U0ALICE01>")


# ---- approvals with quorum, updated in place ------------------------------------------------------
def test_quorum_progress_then_the_decision_replace_the_message_in_place(world: SlackWorld) -> None:
    rid = world.file("ops-admin", reason="db migration")
    world.deliver()
    (msg,) = posted(world, APPROVERS_CHANNEL)
    where = {"channel_id": APPROVERS_CHANNEL, "message_ts": msg.response["ts"]}

    assert world.click("approve_request", rid, APPR1, **where).status_code == 200
    world.wait(lambda: world.notes("request.vote"), what="the first vote")
    assert world.request(rid).state == "pending" and world.count(Approval) == 1
    world.deliver()
    (first,) = updates(world, rid)
    assert (first.params["channel"], first.params["ts"]) == (APPROVERS_CHANNEL, msg.response["ts"])
    assert "Approvals: 1 of 2 — <@U0APPR01>" in blocks_text(first) and actions(first)

    world.click("approve_request", rid, APPR2, **where)
    assert wait_decided(world, rid) == "approved"
    world.wait(lambda: world.notes("request.decided"), what="the decision note")
    world.deliver()
    final = updates(world, rid)[-1]
    assert final.params["ts"] == msg.response["ts"] and actions(final) == []  # buttons gone
    req = world.request(rid)
    assert req.decided_by == APPR2
    assert req.decided_at is not None
    assert f":white_check_mark: Approved by <@U0APPR02> <!date^{int(req.decided_at.timestamp())}^" \
        in blocks_text(final)
    assert posted(world, ALICE)[-1].params["text"].startswith(
        f"Your request #{rid} for `ops-admin` was approved by <@U0APPR02>")
    assert f"Request #{rid} by <@U0ALICE01> for `ops-admin`: approved by <@U0APPR02>" \
        in posted(world, AUDIT_CHANNEL)[-1].params["text"]
    with world.ctx.store() as s:
        grant = s.query(Grant).one()
    assert grant.request_id == rid and world.dispatch.syncs == [grant.target_key]


def test_the_same_approver_twice_counts_once(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.click("approve_request", rid, APPR1, key="one")
    world.wait(lambda: world.count(Approval) == 1, what="the first approval")
    world.click("approve_request", rid, APPR1, key="two")
    assert world.reply("two") == "You have already approved this request."
    assert world.count(Approval) == 1 and world.request(rid).state == "pending"


def test_two_approvers_clicking_at_once_make_exactly_one_decision(world: SlackWorld) -> None:
    rid = world.file("break-glass", user=BOB)  # one approval decides; ALICE and APPR1 both approve
    barrier = threading.Barrier(2)

    def click(user: str) -> None:
        barrier.wait()
        world.click("approve_request", rid, user, key=user)

    threads = [threading.Thread(target=click, args=(u,)) for u in (ALICE, APPR1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wait_decided(world, rid) == "approved"
    world.wait(lambda: world.replies(ALICE) or world.replies(APPR1), what="the loser's ephemeral reply")
    loser = (world.replies(ALICE) + world.replies(APPR1))[0]
    assert loser.params["text"] == "This request has already been decided."
    assert world.count(Grant) == 1 and world.count(Approval) == 1
    assert [a.action for a in world.audit("request.approved")] == ["request.approved"]


# ---- deny, with and without a reason ------------------------------------------------------------------
def test_deny_opens_a_reason_form_and_the_reason_reaches_everyone(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.deliver()
    world.click("deny_request", rid, APPR2)
    opened = world.fake.wait_for("views.open")
    view = opened.get("view")
    assert view["callback_id"] == "deny_request" and json.loads(view["private_metadata"]) == {"request_id": rid}
    reason_block = next(b for b in view["blocks"] if b["block_id"] == "reason")
    assert reason_block["optional"] is True
    assert world.request(rid).state == "pending"  # nothing decided by the click alone

    resp = world.submit("deny_request", {"reason": {"reason": "use the read-only role"}}, APPR2,
                        view["private_metadata"])
    assert resp.status_code == 200 and resp.text == ""
    assert wait_decided(world, rid) == "denied"
    req = world.request(rid)
    assert (req.decided_by, req.decision_note) == (APPR2, "use the read-only role")
    world.deliver()
    final = updates(world, rid)[-1]
    assert actions(final) == [] and ":no_entry: Denied by <@U0APPR02>" in blocks_text(final)
    assert "> use the read-only role" in blocks_text(final)
    dm = posted(world, ALICE)[-1].params["text"]
    assert dm == f"Your request #{rid} for `ops-admin` was denied by <@U0APPR02>.\n> use the read-only role"
    assert "denied by <@U0APPR02> — use the read-only role" in posted(world, AUDIT_CHANNEL)[-1].params["text"]
    assert world.count(Grant) == 0


def test_deny_without_a_reason(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.submit("deny_request", {"reason": {"reason": None}}, APPR1, json.dumps({"request_id": rid}))
    assert wait_decided(world, rid) == "denied"
    assert world.request(rid).decision_note is None
    world.deliver()
    assert posted(world, ALICE)[-1].params["text"] == f"Your request #{rid} for `ops-admin` was denied by <@U0APPR01>."


def test_one_deny_decides_even_after_a_partial_quorum(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.approve(rid, APPR1)
    world.submit("deny_request", {"reason": {"reason": "no"}}, APPR2, json.dumps({"request_id": rid}))
    assert wait_decided(world, rid) == "denied"
    world.click("approve_request", rid, APPR1, key="late")
    assert world.reply("late") == "This request has already been decided."
    assert world.count(Grant) == 0


# ---- timeouts ------------------------------------------------------------------------------------
def test_pending_requests_time_out_and_everyone_is_told(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.deliver()
    (msg,) = posted(world, APPROVERS_CHANNEL)
    report = sweep(world.shifted(hours=2, seconds=1))  # the catalogue's request_timeout is 2h
    assert report.timed_out == [rid]
    assert world.request(rid).state == RequestState.TIMED_OUT.value
    world.deliver()
    final = updates(world, rid)[-1]
    assert final.params["ts"] == msg.response["ts"] and actions(final) == []
    assert ":hourglass: Timed out by Keyturn" in blocks_text(final)
    assert posted(world, ALICE)[-1].params["text"] == (
        f"Your request #{rid} for `ops-admin` timed out without a decision. File it again if you still need it.")
    assert "timed_out by Keyturn" in posted(world, AUDIT_CHANNEL)[-1].params["text"]
    world.click("approve_request", rid, APPR1, key="late")
    assert world.reply("late") == "This request has already been decided."


def test_requests_younger_than_the_timeout_stay_pending(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    assert sweep(world.shifted(hours=1, minutes=59)).timed_out == []
    assert world.request(rid).state == "pending"


# ---- notifications never hold up or undo a decision --------------------------------------------------
def test_slack_429_is_honoured_and_the_message_still_arrives(world: SlackWorld) -> None:
    rid = world.file("ops-admin")
    world.fake.fail_next("chat.postMessage", status=429, retry_after=1)
    world.deliver()
    first, second = world.fake.calls("chat.postMessage")[:2]
    assert (first.status, first.params["channel"]) == (429, APPROVERS_CHANNEL)
    assert (second.status, second.params["channel"]) == (200, APPROVERS_CHANNEL)
    assert second.at - first.at >= 0.9  # waited for Retry-After: 1
    assert len(posted(world, APPROVERS_CHANNEL)) == 2 and world.count(SlackMessage) == 1
    assert f"Access request #{rid}" in blocks_text(second)


def test_a_failing_slack_never_blocks_or_rolls_back_a_decision(world: SlackWorld) -> None:
    from slack_sdk.errors import SlackApiError

    rid = world.file("ops-mfa")
    world.fake.fail_next("chat.postMessage", status=500, times=20)
    world.fake.fail_next("chat.update", status=500, times=20)
    world.click("approve_request", rid, APPR1, key="ok")
    assert wait_decided(world, rid) == "approved"
    with world.ctx.store() as s:
        grant = s.query(Grant).one()
    assert world.dispatch.syncs == [grant.target_key]  # IAM work is queued before any Slack call
    with pytest.raises(SlackApiError):
        world.deliver()  # the notify task fails (and is retried by Celery), nothing else does
    assert world.request(rid).state == "approved" and world.grant(grant.id).state == "provisioning"
    assert world.replies("ok") == []  # the approver saw no error: the decision stands
