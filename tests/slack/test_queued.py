"""Interactions the web acknowledges at once and hands to a worker: what is queued, with whose identity,
what happens when the queue is unreachable, and that a redelivered filing never files twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from celery import Celery

from service.runtime import CeleryDispatcher
from service.slack.interactions import run_interaction, slack_answer
from service.store.models import AccessRequest, Approval, AuditEvent
from tests.slack.conftest import ALICE, APPR1, MALLORY, SlackWorld
from workers.celery_app import celery_config


def origins(world: SlackWorld) -> tuple[str, ...]:
    """Where the world's worker may answer: the fake Slack's response_urls are on loopback."""
    return tuple(world.rt.settings.slack_response_origins)


@pytest.fixture
def queued(world: SlackWorld) -> Iterator[SlackWorld]:
    """The world with no worker draining the queue: interactions stay recorded, not run."""
    world.dispatch.inline = False  # type: ignore[attr-defined]
    yield world


def test_approve_click_is_acknowledged_before_any_decision_and_queued_with_the_signed_clicker(
    queued: SlackWorld,
) -> None:
    request_id = queued.file("ops-read")
    resp = queued.click("approve_request", request_id, APPR1, key="appr")
    assert resp.status_code == 200 and resp.text == ""
    assert queued.request(request_id).state == "pending" and queued.count(Approval) == 0
    ((kind, payload),) = queued.dispatch.interactions
    assert kind == "approve"
    assert payload["request_id"] == request_id and payload["user"] == APPR1 and payload["team"] == "T0TEAM001"
    assert payload["response_url"].endswith("/response/appr")
    # The worker's turn: the same payload decides as APPR1 (ops-read needs one approval).
    run_interaction(queued.ctx, kind, payload, slack_answer(payload, None, origins(queued)))
    assert queued.request(request_id).state == "approved"
    assert queued.replies("appr") == []  # success changes the approvers' message; no extra ephemeral


def test_a_refused_approve_is_answered_ephemerally_without_replacing_the_approvers_message(
    queued: SlackWorld,
) -> None:
    request_id = queued.file("ops-read")
    queued.click("approve_request", request_id, MALLORY, key="mallory")
    ((kind, payload),) = queued.dispatch.interactions
    run_interaction(queued.ctx, kind, payload, slack_answer(payload, None, origins(queued)))
    (reply,) = queued.replies("mallory")
    assert "not an approver" in reply.params["text"].lower()
    assert reply.params["replace_original"] is False and reply.params["response_type"] == "ephemeral"
    assert queued.request(request_id).state == "pending"
    assert queued.count(Approval) == 0
    ((_, ids),) = queued.notes("vote.refused")  # the core's refusal, audited by the notify task
    assert ids["actor"] == MALLORY and ids["request_id"] == request_id


def test_file_and_list_are_queued_with_what_the_worker_needs(queued: SlackWorld) -> None:
    ack = queued.command("ops-admin 2h fixing INC-7", key="f", trigger_id="13345224609.738474920.8088930838d")
    assert ack.json() == {"response_type": "ephemeral", "text": "Filing your request for `ops-admin` (2h)…"}
    queued.command("list", key="l")
    (filing, listing) = queued.dispatch.interactions
    assert filing == ("file", {"role": "ops-admin", "duration": 7200, "reason": "fixing INC-7",
                               "token": "13345224609.738474920.8088930838d", "user": ALICE, "team": "T0TEAM001",
                               "response_url": queued.fake.response_url("f")})
    assert listing[0] == "list" and listing[1]["user"] == ALICE
    assert queued.count(AccessRequest) == 0  # nothing filed until a worker runs it


def test_a_redelivered_filing_finds_its_request_instead_of_filing_twice(queued: SlackWorld) -> None:
    queued.command("ops-read 1h", key="f", trigger_id="9999.1111.aaaa")
    ((kind, payload),) = queued.dispatch.interactions
    for _ in range(2):  # the task ran, its worker died before acknowledging it, Celery delivered it again
        run_interaction(queued.ctx, kind, payload, slack_answer(payload, None, origins(queued)))
    with queued.ctx.store() as session:
        (request,) = session.query(AccessRequest).all()
    assert request.client_token == "9999.1111.aaaa"
    assert [a.action for a in queued.audit()] == ["request.filed"]
    first, second = (r.params["text"] for r in queued.replies("f"))
    assert first == second == f"Request #{request.id} for `ops-read` is sent to the approvers."
    # A different invocation (another trigger id) is another request.
    run_interaction(queued.ctx, kind, {**payload, "token": "9999.2222.bbbb"},
                    slack_answer(payload, None, origins(queued)))
    assert queued.count(AccessRequest) == 2


def test_an_unreachable_queue_is_said_at_once_and_nothing_is_done(world: SlackWorld) -> None:
    # A real Celery app, configured as the service's, whose broker refuses connections: the publish fails
    # within its bounded retries and the user is told in the acknowledgement.
    dead = Celery("dead")
    dead.config_from_object({**celery_config(world.rt.settings), "broker_url": "redis://127.0.0.1:1/0"})
    world.rt.ctx.dispatch = CeleryDispatcher(dead, world.rt.redis, signing_key=world.rt.settings.task_signing_key)
    started = time.monotonic()
    ack = world.command("ops-read 1h", key="f")
    assert time.monotonic() - started < 3.0
    assert "could not queue this" in ack.json()["text"] and "/access list" in ack.json()["text"]
    request_id = world.file("ops-read", duration="2h")
    started = time.monotonic()
    world.click("approve_request", request_id, APPR1, key="appr")
    assert time.monotonic() - started < 3.0
    assert "could not queue this" in world.reply("appr")
    assert world.count(AccessRequest) == 1 and world.count(Approval) == 0
    assert world.count(AuditEvent) == 1  # the filing by the set-up, nothing else


def test_filing_is_idempotent_on_the_client_token_in_the_use_case(world: SlackWorld) -> None:
    from service.operations.request_access import request_access

    first = request_access(world.ctx, requester=ALICE, role_id="ops-read", duration=timedelta(hours=1),
                           client_token="tok-1")
    again = request_access(world.ctx, requester=ALICE, role_id="ops-read", duration=timedelta(hours=1),
                           client_token="tok-1")
    assert again == first and world.count(AccessRequest) == 1
    # Its wake-up is sent again (the first delivery may have died before sending it); the notifier does not
    # post the approvers' message twice (the requester's "waiting" DM is sent again).
    assert world.notes("request.filed") == [("request.filed", {"request_id": first.request_id})] * 2


def test_a_silent_redis_is_given_up_on_within_slacks_three_seconds(world: SlackWorld) -> None:
    """A broker that accepts the connection and never answers (a hung Redis): the publish times out and
    the user is told, before Slack gives up on the acknowledgement."""
    import socket

    from service.runtime import CeleryDispatcher

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        hung = Celery("hung")
        hung.config_from_object({**celery_config(world.rt.settings),
                                 "broker_url": f"redis://127.0.0.1:{silent.getsockname()[1]}/0"})
        world.rt.ctx.dispatch = CeleryDispatcher(hung, world.rt.redis, signing_key=world.rt.settings.task_signing_key)
        started = time.monotonic()
        ack = world.command("ops-read 1h", key="f")
        assert time.monotonic() - started < 3.0
        assert "could not queue this" in ack.json()["text"]
        # Several at once share the stuck write (group commit) and fail with it, not one timeout after another.
        started = time.monotonic()
        with ThreadPoolExecutor(5) as pool:
            acks = list(pool.map(lambda i: world.command("ops-read 1h", key=f"f{i}"), range(5)))
        assert time.monotonic() - started < 3.0
        assert all("could not queue this" in a.json()["text"] for a in acks)
    finally:
        silent.close()


def test_a_redelivered_approve_whose_vote_counted_is_not_answered_as_a_refusal(queued: SlackWorld) -> None:
    request_id = queued.file("ops-admin")  # two approvals needed: the first vote leaves it pending
    queued.click("approve_request", request_id, APPR1, key="appr")
    ((kind, payload),) = queued.dispatch.interactions
    for _ in range(2):  # the worker died after committing the vote; Celery delivered the task again
        run_interaction(queued.ctx, kind, payload, slack_answer(payload, None, origins(queued)))
    assert queued.count(Approval) == 1 and queued.request(request_id).state == "pending"
    assert queued.replies("appr") == []
    assert payload["token"]  # the click's trigger id, kept on the vote
    # The first delivery may have died before sending its wake-ups: each delivery sends them.
    assert queued.notes("request.vote") == [("request.vote", {"request_id": request_id})] * 2
    # A second click by the same approver is a new interaction: it is told its vote already counted.
    queued.click("approve_request", request_id, APPR1, key="again")
    again = queued.dispatch.interactions[-1][1]
    assert again["token"] != payload["token"]
    run_interaction(queued.ctx, "approve", again, slack_answer(again, None, origins(queued)))
    assert [c.params["text"] for c in queued.replies("again")] == ["You have already approved this request."]
    # Someone else's refused click is still answered.
    queued.click("approve_request", request_id, MALLORY, key="mallory")
    run_interaction(queued.ctx, "approve", queued.dispatch.interactions[-1][1],
                    slack_answer(queued.dispatch.interactions[-1][1], None, origins(queued)))
    assert len(queued.replies("mallory")) == 1


def test_a_redelivered_deciding_approve_sends_the_decision_and_the_sync_again(queued: SlackWorld) -> None:
    request_id = queued.file("ops-read")  # one approval decides
    queued.click("approve_request", request_id, APPR1, key="appr")
    ((kind, payload),) = queued.dispatch.interactions
    for _ in range(2):  # the worker died after the commit, before (or after) sending the wake-ups
        run_interaction(queued.ctx, kind, payload, slack_answer(payload, None, origins(queued)))
    assert queued.request(request_id).state == "approved" and queued.count(Approval) == 1
    assert queued.replies("appr") == []
    assert len(queued.notes("request.decided")) == 2
    target = queued.dispatch.syncs[-1]
    assert queued.dispatch.syncs == [target, target]  # the worker's dispatcher de-duplicates the second
