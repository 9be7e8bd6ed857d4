"""The whole Slack lifecycle on real processes: the web app served over HTTP (signed Slack requests in),
a real Celery worker and beat on Redis doing the IAM work on a moto server and the notifications to the
fake Slack Web API, on SQLite and PostgreSQL.

/access → approvers' message → Approve → message updated → DM with the console link → expiry → DM.
Slack faults are injected on the way (a 500 on chat.update, a 429 on chat.postMessage): the grant is never
held up, and every notification still arrives (Celery retries; the WebClient honours Retry-After).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from service.operations.context import RecordingDispatcher
from service.settings import Settings
from service.store.models import AccessRequest, Grant
from tests.slack.conftest import (
    ACCOUNT,
    ALICE,
    APPR1,
    APPROVERS_CHANNEL,
    AUDIT_CHANNEL,
    ServedApp,
    SlackWorld,
    write_catalog,
)
from tests.support.live import Keyturn, broker_url, fault_proxy, keyturn_procs  # noqa: F401 - reused fixtures
from tests.support.slack_fake import FakeSlack, SlackCall
from tests.support.slack_signing import DEFAULT_SECRET, TASK_SIGNING_KEY

pytestmark = pytest.mark.slow
WAIT = 30.0
GRANT = "6s"


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    """The Slack tests' catalogue (approvers' channel, audit channel) for the integration fixtures."""
    return write_catalog(tmp_path / "catalog.yaml")


@pytest.fixture
def live(request: pytest.FixtureRequest, db_url: str, slack_fake: FakeSlack) -> Iterator[tuple[Keyturn, SlackWorld]]:
    """Worker and beat talking to the fake Slack; the web app (same runtime, Celery dispatch) on loopback.

    On SQLite and PostgreSQL (`db_url` is named here so the test is parametrized over both).
    """
    from service.app import create_app

    kt: Keyturn = request.getfixturevalue("keyturn_procs")  # tests/integration's processes, reused
    kt.env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack_fake.base_url, SLACK_SIGNING_SECRET=DEFAULT_SECRET,
                  KEYTURN_TASK_SIGNING_KEY=TASK_SIGNING_KEY, KEYTURN_SLACK_RESPONSE_HOSTS=slack_fake.root_url)
    kt.start_worker(aws_url=kt.moto_url)
    kt.start_beat()
    app = create_app(Settings.from_env(kt.env), runtime=kt.runtime)
    served = ServedApp(app)
    try:
        yield kt, SlackWorld(served.url, app, slack_fake, RecordingDispatcher())
    finally:
        served.close()


def wait_call(kt: Keyturn, fake: FakeSlack, method: str, what: str, pred: Any) -> SlackCall:
    """Wait for a matching Slack call; on timeout show the processes' logs."""
    def first() -> SlackCall | None:
        return next((c for c in fake.calls(method) if c.status == 200 and pred(c)), None)

    call: SlackCall = kt.wait_until(what, first, timeout=WAIT)
    return call


def owned(kt: Keyturn) -> list[dict[str, Any]]:
    """Keyturn's statements in OpsMfa's trust policy, read straight from moto."""
    from service.core.policy import is_owned

    doc = kt.iam.get_role(RoleName="OpsMfa")["Role"]["AssumeRolePolicyDocument"]
    return [st for st in doc["Statement"] if is_owned(st)]


def blocks(call: SlackCall) -> str:
    return json.dumps(call.get("blocks"), ensure_ascii=False)


def test_request_approve_dm_with_link_expiry_dm(live: tuple[Keyturn, SlackWorld]) -> None:
    kt, world = live
    fake = world.fake

    # /access, signed, over HTTP: acknowledged at once with a placeholder; the worker files the request,
    # replaces the placeholder on the command's response_url, and posts to the approvers' channel.
    answer = world.command(f"ops-mfa {GRANT} restore the backups", key="cmd").json()
    assert answer["response_type"] == "ephemeral" and answer["text"].startswith("Filing your request for `ops-mfa`")
    filed = wait_call(kt, fake, "response_url", "the worker's answer to /access",
                      lambda c: c.params.get("_key") == "cmd")
    assert filed.params["text"].endswith("is sent to the approvers.") and filed.params["replace_original"] is True
    with world.ctx.store() as s:
        req = s.query(AccessRequest).one()
    ask = wait_call(kt, fake, "chat.postMessage", "the approvers' message",
                    lambda c: c.params["channel"] == APPROVERS_CHANNEL)
    assert f"Access request #{req.id}" in blocks(ask) and "*Reason:* restore the backups" in blocks(ask)
    assert '"action_id": "approve_request"' in blocks(ask)
    wait_call(kt, fake, "chat.postMessage", "the 'waiting' DM",
              lambda c: c.params["channel"] == ALICE and "waiting for approval" in c.params["text"])

    # Slack misbehaves from here on: a 500 on the message update, a 429 on the next post.
    fake.fail_next("chat.update", status=500)
    fake.fail_next("chat.postMessage", status=429, retry_after=1)

    # Approve, signed, from the approvers' channel message.
    resp = world.click("approve_request", req.id, APPR1, key="approve", channel_id=APPROVERS_CHANNEL,
                       message_ts=ask.response["ts"])
    assert resp.status_code == 200
    kt.wait_until("the approval", lambda: world.request(req.id).state == "approved")
    with world.ctx.store() as s:
        grant_id = s.query(Grant).one().id
    kt.wait_state(grant_id, "active")  # the worker synced IAM; Slack's faults held nothing up
    (statement,) = owned(kt)
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}
    assert statement["Condition"]["Bool"] == {"aws:MultiFactorAuthPresent": "true"}

    # The approvers' message is updated in place (after the 500, by Celery's retry): buttons gone.
    final = wait_call(kt, fake, "chat.update", "the decided approvers' message",
                      lambda c: c.params["ts"] == ask.response["ts"] and "Approved by" in blocks(c))
    assert '"actions"' not in blocks(final) and f"<@{APPR1}>" in blocks(final)

    # The requester's DM with the console link and the profile.
    dm = wait_call(kt, fake, "chat.postMessage", "the grant DM",
                   lambda c: c.params["channel"] == ALICE and "Switch Role" in blocks(c))
    grant = kt.row(grant_id)
    assert f"<!date^{int(grant.expires_at.timestamp())}^" in blocks(dm)
    url = re.search(r"<(https://signin\.aws\.amazon\.com/switchrole\?[^|>]+)\|", blocks(dm))
    assert url and parse_qs(urlsplit(url.group(1)).query)["roleName"] == ["keyturn/OpsMfa"]
    assert f"mfa_serial = arn:aws:iam::{ACCOUNT}:mfa/alice" in blocks(dm)
    assert any(c.status == 429 for c in fake.calls("chat.postMessage"))  # the 429 happened, and was retried
    assert any(c.status == 500 for c in fake.calls("chat.update"))

    # Expiry: beat's sweeper, the worker's sync, and a DM once IAM no longer has the statement.
    kt.wait_state(grant_id, "expired", timeout=WAIT + 10)
    assert owned(kt) == []
    gone = wait_call(kt, fake, "chat.postMessage", "the expiry DM",
                     lambda c: c.params["channel"] == ALICE and "expired" in c.params["text"])
    assert gone.params["text"] == "Your access to `ops-mfa` expired; IAM no longer lets you in."
    audit = [c.params["text"] for c in fake.calls("chat.postMessage")
             if c.params["channel"] == AUDIT_CHANNEL and c.status == 200]
    kt.wait_until("the audit channel's expiry line", lambda: any(
        "expired (removal verified)" in c.params["text"] for c in fake.calls("chat.postMessage")
        if c.params["channel"] == AUDIT_CHANNEL))
    assert any(f"Request #{req.id}" in line and "approved by" in line for line in audit)
    assert any(line.startswith(f"Grant {grant_id}: <@{ALICE}> has `ops-mfa`") for line in audit)
    # One DM per state change: waiting, approved, granted, expired (retries never doubled one).
    texts = [c.params["text"] for c in fake.calls("chat.postMessage")
             if c.params["channel"] == ALICE and c.status == 200]
    assert len(texts) == 4, texts
