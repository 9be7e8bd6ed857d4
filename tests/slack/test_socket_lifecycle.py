"""Socket Mode on real processes: `keyturn socket` as a subprocess connected to the fake Socket Mode server on
loopback (a real WebSocket, handed out by the fake Web API's apps.connections.open), a real Celery worker on
Redis doing the IAM work on moto, on SQLite and PostgreSQL. /access → the approvers' message → Approve → the
grant's statement in moto's trust policy; the workers take only what the socket process sealed; a
redelivered envelope files nothing twice and a refresh (Slack's `disconnect`) loses nothing.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from service.core.policy import is_owned
from service.store.models import AccessRequest, Grant
from tests.slack.conftest import ACCOUNT, ALICE, APPR1, APPROVERS_CHANNEL, write_catalog
from tests.support.live import Keyturn, broker_url, fault_proxy, keyturn_procs  # noqa: F401 - reused fixtures
from tests.support.processes import ManagedProcess
from tests.support.slack_fake import APP_TOKEN, FakeSlack, SlackCall
from tests.support.slack_signing import TASK_SIGNING_KEY, block_actions_payload, slash_command_body
from tests.support.socket_mode_fake import FakeSocketMode

pytestmark = pytest.mark.slow
WAIT = 30.0


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    """The Slack tests' catalogue (approvers' channel) for the integration fixtures."""
    return write_catalog(tmp_path / "catalog.yaml")


@pytest.fixture
def socket_live(request: pytest.FixtureRequest, db_url: str, slack_fake: FakeSlack,
                tmp_path: Path) -> Iterator[tuple[Keyturn, FakeSocketMode, ManagedProcess]]:
    """A worker and `keyturn socket` (its own process) talking to the fake Slack, on SQLite and PostgreSQL."""
    kt: Keyturn = request.getfixturevalue("keyturn_procs")
    server = FakeSocketMode().start()
    slack_fake.socket_server = server
    kt.env.update(SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack_fake.base_url, SLACK_SIGNING_SECRET="",
                  KEYTURN_SLACK_MODE="socket", SLACK_APP_TOKEN=APP_TOKEN, KEYTURN_TASK_SIGNING_KEY=TASK_SIGNING_KEY,
                  KEYTURN_SLACK_RESPONSE_HOSTS=slack_fake.root_url)
    worker = kt.start_worker(aws_url=kt.moto_url, ready=False)  # both start at once: the boot is the slow part
    proc = kt.spawn([sys.executable, "-m", "service.cli", "socket", "--health-file", str(tmp_path / "alive")],
                    env=kt.env, name="keyturn-socket")
    kt.procs.append(proc)
    try:
        proc.wait_for_log(r"connected to Slack over Socket Mode", timeout=WAIT)
        server.wait_connected(WAIT)
        worker.wait_for_log(r"ready\.", timeout=WAIT)
        yield kt, server, proc
    finally:
        proc.stop()
        server.stop()


def state_of(kt: Keyturn, request_id: int) -> str:
    with kt.ctx.store() as s:
        return str(s.get(AccessRequest, request_id).state)


def wait_call(kt: Keyturn, fake: FakeSlack, method: str, what: str, pred: Any) -> SlackCall:
    def first() -> SlackCall | None:
        return next((c for c in fake.calls(method) if c.status == 200 and pred(c)), None)

    call: SlackCall = kt.wait_until(what, first, timeout=WAIT)
    return call


def test_access_approve_grant_through_keyturn_socket(socket_live: tuple[Keyturn, FakeSocketMode, ManagedProcess],
                                                    slack_fake: FakeSlack, tmp_path: Path) -> None:
    kt, server, proc = socket_live
    fake = slack_fake
    assert [c.token for c in fake.calls("apps.connections.open")] == [APP_TOKEN]

    # /access over the socket: acknowledged within Slack's 3 s, the placeholder riding on the ack.
    body = slash_command_body(text="ops-mfa 1h restore the backups", user_id=ALICE,
                              response_url=fake.response_url("cmd"))
    envelope = server.send("slash_commands", dict(parse_qsl(body, keep_blank_values=True)))
    ack = server.ack(envelope)
    assert ack.payload == {"response_type": "ephemeral", "text": "Filing your request for `ops-mfa` (1h)…"}
    # The worker took the sealed interaction, filed it and answered on the command's response_url.
    filed = wait_call(kt, fake, "response_url", "the worker's answer to /access",
                      lambda c: c.params.get("_key") == "cmd")
    assert filed.params["text"].endswith("is sent to the approvers.")
    ask = wait_call(kt, fake, "chat.postMessage", "the approvers' message",
                    lambda c: c.params["channel"] == APPROVERS_CHANNEL)
    with kt.ctx.store() as s:
        req = s.query(AccessRequest).one()
    assert req.requester == ALICE and req.team_id == "T0TEAM001"

    # Slack redelivers the command (its ack was lost) and then refreshes the connection: the worker files
    # nothing twice, and the approval arrives over the new socket.
    server.send("slash_commands", server.payloads[envelope], envelope_id=envelope)
    assert server.ack(envelope, nth=2).payload == ack.payload
    kt.wait_until("the redelivery's answer", lambda: len([c for c in fake.calls("response_url")
                                                         if c.params.get("_key") == "cmd"]) == 2)
    server.disconnect("refresh_requested", close_after=0.5)
    server.wait_connected(WAIT, handshakes=2)
    with kt.ctx.store() as s:
        assert s.query(AccessRequest).count() == 1

    # Approve from that message, over the socket.
    click = block_actions_payload(APPR1, action_id="approve_request", value=str(req.id), channel_id=APPROVERS_CHANNEL,
                                  message_ts=ask.response["ts"], response_url=fake.response_url("ok"))
    click_id = server.send("interactive", click)
    assert server.ack(click_id).raw == {"envelope_id": click_id}
    kt.wait_until("the approval", lambda: state_of(kt, req.id) == "approved")
    with kt.ctx.store() as s:
        grant_id = s.query(Grant).one().id
    kt.wait_state(grant_id, "active")
    doc = kt.iam.get_role(RoleName="OpsMfa")["Role"]["AssumeRolePolicyDocument"]
    owned = [st for st in doc["Statement"] if is_owned(st)]
    assert [st["Principal"] for st in owned] == [{"AWS": f"arn:aws:iam::{ACCOUNT}:user/alice"}], json.dumps(doc)

    # The healthcheck: connected while running; on SIGTERM it closes the socket, forgets the file, exits 0.
    check = [sys.executable, "-m", "service.cli", "socket", "--check", "--health-file", str(tmp_path / "alive")]
    assert subprocess.run(check, capture_output=True, timeout=WAIT).returncode == 0
    proc._signal_group(signal.SIGTERM)
    assert proc.wait(WAIT) == 0, proc.tail()
    assert not (tmp_path / "alive").exists()
    assert [c.token for c in fake.calls("apps.connections.open")] == [APP_TOKEN, APP_TOKEN]
    assert server.unexpected == [] and server.protocol_errors == []
    assert APP_TOKEN not in proc.log_text()
