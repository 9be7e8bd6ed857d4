"""Replayed forms: the very same signed view_submission, sent again within Slack's 5 minutes (an attacker
on the path, or a redelivery), files at most once, for the request form and the Extend form alike."""

from __future__ import annotations

import json
from typing import Any

from service.store.models import AccessRequest
from tests.slack.conftest import ALICE, APPR1, BOB, SlackWorld
from tests.support.slack_signing import view_submission_body

PICKED = {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": "ops-admin"},
                                                       "value": "ops-admin"}}
FORM = {"role": {"role": PICKED}, "duration": {"duration": "2h"}, "reason": {"reason": "deploy hotfix"},
        "ticket": {"ticket": "INC-7"}}


def _replayed(world: SlackWorld, body: str, times: int = 3) -> None:
    for _ in range(times):
        resp = world.post(body)
        assert resp.status_code == 200 and resp.text == "", resp.text  # each one closes the modal


def test_a_replayed_request_form_files_once(world: SlackWorld) -> None:
    body = view_submission_body(ALICE, callback_id="request_access", state_values=FORM, view_id="V0FORM0001")
    _replayed(world, body)
    assert world.count(AccessRequest) == 1
    assert len(world.audit("request.filed")) == 1
    # Another modal (another view id) is another request, and so is another user's with the same view id.
    world.post(view_submission_body(ALICE, callback_id="request_access", state_values=FORM, view_id="V0FORM0002"))
    world.post(view_submission_body(BOB, callback_id="request_access", state_values=FORM, view_id="V0FORM0001"))
    with world.ctx.store() as s:
        assert sorted(r.requester for r in s.query(AccessRequest)) == [ALICE, ALICE, BOB]


def test_a_form_sent_back_with_errors_files_once_fixed(world: SlackWorld) -> None:
    wrong: dict[str, Any] = {**FORM, "duration": {"duration": "9h"}}
    resp = world.post(view_submission_body(ALICE, callback_id="request_access", state_values=wrong,
                                           view_id="V0FORM0003"))
    assert json.loads(resp.text)["response_action"] == "errors"
    _replayed(world, view_submission_body(ALICE, callback_id="request_access", state_values=FORM,
                                          view_id="V0FORM0003"), times=2)
    assert world.count(AccessRequest) == 1


def test_a_replayed_extend_form_files_one_extension(world: SlackWorld) -> None:
    grant_id = world.approve(world.file("ops-read"), APPR1)
    assert grant_id
    values = {"duration": {"duration": "2h"}, "reason": {"reason": "still on it"}}
    body = view_submission_body(ALICE, callback_id="extend_grant", state_values=values,
                                private_metadata=json.dumps({"grant_id": grant_id}), view_id="V0EXT00001")
    _replayed(world, body)
    with world.ctx.store() as s:
        extensions = s.query(AccessRequest).filter(AccessRequest.extends_grant_id == grant_id).all()
    assert len(extensions) == 1 and extensions[0].duration_seconds == 7200
