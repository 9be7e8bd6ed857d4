"""Socket Mode (KEYTURN_SLACK_MODE=socket) in-process: Bolt's Socket Mode handler, through
service/slack/socket_mode.serve, connected to the fake Socket Mode server on loopback (a real WebSocket) that
the fake Web API's apps.connections.open hands out. Envelopes in Slack's real shapes; their acknowledgements
checked (envelope_id, the slash command's answer as payload). The same listeners, middleware and queueing as
over HTTP (the recording dispatcher runs queued interactions inline, as in tests/slack/conftest.py); the real
`keyturn socket` process with a Celery worker is in test_socket_lifecycle.py.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import requests
from click.testing import CliRunner

from service.cli import main as cli
from service.logs import JsonFormatter
from service.settings import Settings, SettingsError, slack_problems
from service.slack import socket_mode
from service.store.models import AccessRequest, Approval
from tests.slack.conftest import (
    ALICE,
    APPR1,
    MALLORY,
    InlineDispatcher,
    ServedApp,
    SlackWorld,
    write_catalog,
)
from tests.support.slack_fake import APP_TOKEN, FakeSlack
from tests.support.slack_signing import (
    TASK_SIGNING_KEY,
    block_actions_payload,
    event_callback_body,
    post_signed,
    slash_command_body,
)
from tests.support.socket_mode_fake import FakeSocketMode

EVIL = "T0EVILCORP"
REFUSED = "This action came from a different Slack workspace."


def socket_settings(db_url: str, redis_url: str, fake: FakeSlack, catalog: Path, **over: Any) -> Settings:
    base = Settings(database_url=db_url, redis_url=redis_url, catalog_path=catalog, slack_bot_token="xoxb-test",
                    slack_mode="socket", slack_app_token=APP_TOKEN, task_signing_key=TASK_SIGNING_KEY,
                    slack_response_origins=(fake.root_url,), slack_api_url=fake.base_url, log_level="WARNING")
    return replace(base, **over)


@dataclass
class SocketWorld:
    world: SlackWorld  # the database and Slack helpers of the HTTP tests (its app is the socket-mode web)
    server: FakeSocketMode
    health: Path

    @property
    def fake(self) -> FakeSlack:
        return self.world.fake

    def command(self, text: str, user: str = ALICE, key: str = "cmd", **kwargs: Any) -> str:
        """/access as a slash_commands envelope (Slack sends the form's fields as a JSON object)."""
        body = slash_command_body(text=text, user_id=user, response_url=self.fake.response_url(key), **kwargs)
        return self.server.send("slash_commands", dict(parse_qsl(body, keep_blank_values=True)))

    def click(self, action_id: str, value: str | int, user: str, key: str = "click", **kwargs: Any) -> str:
        payload = block_actions_payload(user, action_id=action_id, value=str(value),
                                        response_url=self.fake.response_url(key), **kwargs)
        return self.server.send("interactive", payload)

    def event(self, event: dict[str, Any], team_id: str = "T0TEAM001", **kwargs: Any) -> str:
        return self.server.send("events_api", json.loads(event_callback_body(event, team_id)), **kwargs)


@pytest.fixture
def sock(request: pytest.FixtureRequest, sqlite_url: str, redis_url: str, slack_fake: FakeSlack,
         tmp_path: Path) -> Iterator[SocketWorld]:
    """The socket handler connected in a thread, the socket-mode web on loopback, on SQLite (what is tested
    here cannot depend on the database; the lifecycle runs on both). An indirect parameter (a callable) sets
    up the health file's path before the process starts."""
    from service.runtime import build_runtime
    from service.store.db import migrate

    migrate(sqlite_url)
    settings = socket_settings(sqlite_url, redis_url, slack_fake, write_catalog(tmp_path / "catalog.yaml"))
    server = FakeSocketMode().start()
    slack_fake.socket_server = server
    dispatch = InlineDispatcher()
    rt = build_runtime(settings, dispatch=dispatch)
    handler = socket_mode.build_handler(settings, runtime=rt)
    from service.app import create_app

    app = create_app(settings, runtime=rt)  # the socket-mode web: the same runtime, no /slack/events
    dispatch.app = app
    stop, health = threading.Event(), tmp_path / "alive"
    if callable(getattr(request, "param", None)):
        request.param(health)
    thread = threading.Thread(target=socket_mode.serve, args=(handler, stop, health), daemon=True)
    thread.start()
    served = ServedApp(app)
    try:
        server.wait_connected(10)
        yield SocketWorld(SlackWorld(served.url, app, slack_fake, dispatch), server, health)
    finally:
        stop.set()
        thread.join(10)
        served.close()
        server.stop()
        rt.engine.dispose()


# ---- the same surface over the socket ----------------------------------------------------------------
def test_a_slash_command_is_acknowledged_with_its_answer_and_filed_once(sock: SocketWorld) -> None:
    w = sock.world
    assert len(sock.fake.calls("apps.connections.open")) == 1
    assert sock.fake.calls("apps.connections.open")[0].token == APP_TOKEN
    envelope = sock.command("ops-read 1h fixing the build", key="cmd")
    ack = sock.server.ack(envelope)  # within Slack's 3 s, the ephemeral placeholder riding on it
    assert ack.raw["envelope_id"] == envelope
    assert ack.payload == {"response_type": "ephemeral", "text": "Filing your request for `ops-read` (1h)…"}
    assert w.reply("cmd").endswith("is sent to the approvers.")
    # Slack redelivers the same envelope (the ack was lost), then a copy under a new envelope id: both are
    # acknowledged, nothing is filed twice (filing is idempotent on the command's trigger id).
    sock.server.send("slash_commands", sock.server.payloads[envelope], envelope_id=envelope)
    assert sock.server.ack(envelope, nth=2).payload == ack.payload
    again = sock.server.send("slash_commands", sock.server.payloads[envelope])
    sock.server.ack(again)
    w.wait(lambda: len(w.replies("cmd")) == 3, what="the redeliveries' answers")
    assert w.count(AccessRequest) == 1 and w.request(1).requester == ALICE
    assert sock.server.unexpected == [] and sock.server.protocol_errors == []


def test_approve_over_the_socket_decides_once(sock: SocketWorld) -> None:
    w = sock.world
    rid = w.file("ops-read", reason="deploy")
    envelope = sock.click("approve_request", rid, APPR1, key="ok")
    ack = sock.server.ack(envelope)
    assert ack.payload is None and ack.raw == {"envelope_id": envelope}  # an empty acknowledgement
    w.wait(lambda: w.request(rid).state == "approved", what="the approval")
    audits = len(w.audit())
    sock.server.send("interactive", sock.server.payloads[envelope], envelope_id=envelope)  # redelivered
    sock.server.ack(envelope, nth=2)  # acknowledged again (the dispatcher runs it inline, before the ack)
    assert w.count(Approval) == 1 and w.grant(1).requester == ALICE
    assert [e.action for e in w.audit()[audits:]] == []  # the second delivery changed nothing


def test_an_event_and_its_retry_are_handled_once(sock: SocketWorld) -> None:
    w = sock.world
    envelope = sock.event({"type": "app_home_opened", "user": ALICE, "tab": "home"})
    assert sock.server.ack(envelope).raw == {"envelope_id": envelope}
    retry = sock.server.send("events_api", sock.server.payloads[envelope], retry_attempt=1)  # same event_id
    sock.server.ack(retry)
    assert w.notes("home.refresh") == [("home.refresh", {"user_id": ALICE})]


# ---- attackers -------------------------------------------------------------------------------------
def test_envelopes_from_another_workspace_are_refused_exactly_as_over_http(
        sock: SocketWorld, caplog: pytest.LogCaptureFixture) -> None:
    w = sock.world
    rid = w.file("ops-read")
    w.dispatch.notes.clear()
    with caplog.at_level(logging.WARNING, logger="service.slack.bolt_app"):
        cmd = sock.command("ops-read 1h fixing", team_id=EVIL)
        assert sock.server.ack(cmd).payload == {"response_type": "ephemeral", "text": REFUSED}
        click = sock.click("approve_request", rid, APPR1, key="evil", team_id=EVIL)
        sock.server.ack(click)
        assert w.reply("evil") == REFUSED
        event = sock.event({"type": "app_home_opened", "user": ALICE, "tab": "home"}, team_id=EVIL)
        sock.server.ack(event)
    assert sum("outside the served workspace" in r.getMessage() for r in caplog.records) == 3
    assert w.request(rid).state == "pending" and w.count(AccessRequest) == 1 and w.count(Approval) == 0
    assert w.dispatch.interactions == [] and w.notes() == []
    assert sock.fake.calls("views.open") == []


def test_an_unknown_user_is_refused_as_over_http(sock: SocketWorld) -> None:
    w = sock.world
    ack = sock.server.ack(sock.command("ops-read 1h", user=MALLORY, key="m"))
    assert ack.payload == {"response_type": "ephemeral", "text": "Filing your request for `ops-read` (1h)…"}
    assert "no AWS principal mapped" in w.reply("m")
    rid = w.file("ops-read")
    sock.server.ack(sock.click("approve_request", rid, MALLORY, key="mv"))
    w.wait(lambda: w.replies("mv"), what="the refusal")
    assert w.request(rid).state == "pending" and w.count(AccessRequest) == 1
    assert [e.actor for e in w.audit("vote.refused")] == [MALLORY]


# ---- the connection ----------------------------------------------------------------------------------
def test_a_refresh_and_a_dropped_connection_lose_nothing(sock: SocketWorld) -> None:
    w = sock.world
    w.wait(lambda: socket_mode.alive(sock.health), 3, "the health file")  # touched once connected
    before = sock.command("ops-read 1h one", key="a")
    sock.server.ack(before)
    sock.server.disconnect("refresh_requested", close_after=1.0)
    sock.server.wait_connected(10, handshakes=2)  # a new URL from apps.connections.open, a new socket
    assert len(sock.fake.calls("apps.connections.open")) == 2
    after = sock.command("ops-admin 1h two", key="b")
    assert sock.server.ack(after).payload is not None
    sock.server.drop()  # the network drops: the client reconnects by itself
    sock.server.wait_connected(10, handshakes=3)
    dropped = sock.command("break-glass 1h three", key="c")
    sock.server.ack(dropped)
    for key in "abc":
        w.reply(key)
    assert sorted(r.role_id for r in all_requests(w)) == ["break-glass", "ops-admin", "ops-read"]
    assert sock.server.connections == 1 and socket_mode.alive(sock.health)
    assert sock.server.unexpected == [] and sock.server.protocol_errors == []


def test_odd_frames_do_not_stop_the_connection(sock: SocketWorld) -> None:
    """Garbage, an unknown envelope type and an envelope without a payload are dropped; the next one is served."""
    client = next(c for c in sock.server._clients if c.open)
    client.send_json({"type": "no_such_type", "envelope_id": "x-1", "payload": {"a": 1}})
    client.send_json({"type": "slash_commands", "envelope_id": "x-2"})
    client.send_frame(0x1, b"not json at all")
    envelope = sock.command("ops-read 1h after the noise", key="n")
    assert sock.server.ack(envelope).payload is not None
    assert sock.world.reply("n").endswith("is sent to the approvers.")
    assert sock.world.count(AccessRequest) == 1 and sock.server.connections == 1


def all_requests(w: SlackWorld) -> list[AccessRequest]:
    with w.ctx.store() as s:
        return list(s.query(AccessRequest).order_by(AccessRequest.id))


def test_the_socket_mode_web_serves_no_slack_endpoint_but_health_and_rest(sock: SocketWorld) -> None:
    body = slash_command_body(text="ops-read 1h x", user_id=ALICE)
    assert post_signed(sock.world.url, body).status_code == 404
    assert requests.get(sock.world.base + "/healthz", timeout=5).status_code == 200
    assert requests.get(sock.world.base + "/api/openapi.json", timeout=5).status_code == 200
    assert sock.world.count(AccessRequest) == 0


# ---- settings and start-up ---------------------------------------------------------------------------
def env_for(sqlite_url: str, catalog: Path, fake: FakeSlack, **over: str) -> dict[str, str]:
    return {"DATABASE_URL": sqlite_url, "KEYTURN_CATALOG": str(catalog), "SLACK_BOT_TOKEN": "xoxb-test",
            "SLACK_API_URL": fake.base_url, "KEYTURN_TASK_SIGNING_KEY": TASK_SIGNING_KEY,
            "KEYTURN_SLACK_MODE": "socket", "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_SIGNING_SECRET": "",
            "KEYTURN_LOG_LEVEL": "WARNING", **over}


@pytest.mark.parametrize(("over", "named"), [
    ({"SLACK_APP_TOKEN": ""}, "SLACK_APP_TOKEN is not set"),
    ({"SLACK_APP_TOKEN": "xoxb-1234-5678-abcdefABCDEFabcdef"}, "SLACK_APP_TOKEN is not an app-level token"),
    ({"SLACK_APP_TOKEN": "xapp-replace-me-0123456789abcdef"}, "SLACK_APP_TOKEN is not an app-level token"),
    ({"KEYTURN_SLACK_MODE": "http"}, "KEYTURN_SLACK_MODE is 'http'"),
    ({"KEYTURN_SLACK_MODE": "websocket"}, "KEYTURN_SLACK_MODE: 'websocket' is neither http nor socket"),
])
def test_keyturn_socket_refuses_to_start_naming_the_variable(over: dict[str, str], named: str, sqlite_url: str,
                                                             slack_fake: FakeSlack, tmp_path: Path) -> None:
    slack_fake.socket_server = object()  # it must not get as far as asking
    result = CliRunner().invoke(cli, ["socket"], env=env_for(sqlite_url, write_catalog(tmp_path / "c.yaml"),
                                                             slack_fake, **over))
    assert result.exit_code == 1 and named in result.output, result.output
    assert slack_fake.calls("apps.connections.open") == []


def test_an_app_token_slack_refuses_stops_keyturn_socket_at_start(sqlite_url: str, slack_fake: FakeSlack,
                                                                 tmp_path: Path) -> None:
    from service.store.db import migrate

    migrate(sqlite_url)
    server = FakeSocketMode().start()
    slack_fake.socket_server = server
    try:
        revoked = "xapp-1-A0KEYTURN-1234567890-ffffffffffffffffffffffffffffffff"  # well-formed, not Slack's
        result = CliRunner().invoke(cli, ["socket", "--health-file", str(tmp_path / "alive")],
                                    env=env_for(sqlite_url, write_catalog(tmp_path / "c.yaml"), slack_fake,
                                                SLACK_APP_TOKEN=revoked))
    finally:
        server.stop()
    assert result.exit_code == 1, result.output
    assert "Slack refused apps.connections.open (invalid_auth): check SLACK_APP_TOKEN" in result.output
    assert server.handshakes == 0 and not (tmp_path / "alive").exists()
    assert revoked not in result.output


def test_http_mode_still_requires_the_signing_secret_and_socket_mode_does_not() -> None:
    ok = Settings(slack_bot_token="xoxb-1234-abcd", task_signing_key=TASK_SIGNING_KEY)
    http = slack_problems(replace(ok, slack_app_token=APP_TOKEN))  # an app token does not stand in for it
    assert len(http) == 1 and http[0].startswith("SLACK_SIGNING_SECRET is not set")
    assert slack_problems(replace(ok, slack_mode="socket", slack_app_token=APP_TOKEN)) == []
    env = {"KEYTURN_SLACK_MODE": " Socket ", "SLACK_BOT_TOKEN": "xoxb-1234-abcd", "KEYTURN_TASK_SIGNING_KEY":
           TASK_SIGNING_KEY}
    assert [p.split(":")[0] for p in socket_mode.socket_problems(Settings.from_env(env))] == [
        "SLACK_APP_TOKEN is not set"]
    with pytest.raises(SettingsError, match="SLACK_APP_TOKEN is not set"):
        socket_mode.build_handler(Settings.from_env(env))


def test_the_app_token_is_redacted_in_logs() -> None:
    assert APP_TOKEN not in repr(Settings(slack_app_token=APP_TOKEN))
    record = logging.LogRecord("keyturn", logging.ERROR, __file__, 1, "opening with %s", (APP_TOKEN,), None)
    assert APP_TOKEN not in JsonFormatter().format(record)  # by its shape, configured or not
    odd = "xapp-odd-shaped-but-configured"
    record = logging.LogRecord("keyturn", logging.ERROR, __file__, 1, "opening with %s", (odd,), None)
    assert odd not in JsonFormatter(secrets=(odd,)).format(record)


def test_keyturn_socket_check_is_the_healthcheck(tmp_path: Path) -> None:
    health = tmp_path / "alive"
    run = CliRunner().invoke
    assert run(cli, ["socket", "--check", "--health-file", str(health)]).exit_code == 1  # never connected
    health.touch()
    assert run(cli, ["socket", "--check", "--health-file", str(health)]).exit_code == 0
    old = time.time() - 45
    os.utime(health, (old, old))  # connected once, not in the last 30 s
    result = run(cli, ["socket", "--check", "--health-file", str(health)])
    assert result.exit_code == 1 and "older than 30s" in result.output
    assert run(cli, ["socket", "--check", "--health-file", str(health), "--max-age", "60"]).exit_code == 0


def _link_to_victim(health: Path) -> None:
    health.symlink_to(health.parent / "victim")  # another local user's link at the fixed /tmp name


def _someone_elses(health: Path) -> None:
    health.touch()
    os.chmod(health, 0o666)  # writable by anyone: only its owner makes it say anything
    os.chown(health, 65534, 65534)  # nobody's (the tests run as root; as another user this is skipped)


@pytest.mark.parametrize("sock", [_link_to_victim], indirect=True)
def test_a_link_at_the_health_files_path_is_not_followed(sock: SocketWorld) -> None:
    victim = sock.health.parent / "victim"
    sock.server.ack(sock.command("ops-read 1h fixing the build"))  # connected and past its first touch
    time.sleep(0.3)
    assert not victim.exists()  # nothing created (or touched) through the link
    assert sock.health.is_symlink() and not socket_mode.alive(sock.health)
    victim.touch()  # the link's target fresh: still not this process's health
    assert not socket_mode.alive(sock.health)
    assert sock.world.count(AccessRequest) == 1  # and the connection kept serving


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the file to another user")
@pytest.mark.parametrize("sock", [_someone_elses], indirect=True)
def test_a_health_file_another_user_owns_is_neither_touched_nor_believed(sock: SocketWorld) -> None:
    old = time.time() - 3600
    os.utime(sock.health, (old, old))
    sock.server.ack(sock.command("ops-read 1h fixing the build"))
    time.sleep(0.3)
    assert sock.health.stat().st_mtime == old  # not kept fresh by this process
    os.utime(sock.health)  # the other user keeps it fresh: the healthcheck does not believe it
    assert not socket_mode.alive(sock.health)
    assert CliRunner().invoke(cli, ["socket", "--check", "--health-file", str(sock.health)]).exit_code == 1
    assert sock.world.count(AccessRequest) == 1


def test_the_socket_manifest_is_the_http_app_without_request_urls() -> None:
    import yaml

    config = Path(__file__).resolve().parents[2] / "config"
    http = yaml.safe_load((config / "slack-manifest.yaml").read_text())
    sock = yaml.safe_load((config / "slack-manifest.socket.yaml").read_text())
    assert sock["settings"].pop("socket_mode_enabled") is True and http["settings"].pop("socket_mode_enabled") is False
    assert "/slack/events" not in (config / "slack-manifest.socket.yaml").read_text()
    for command in http["features"]["slash_commands"]:
        assert command.pop("url").endswith("/slack/events")
    assert http["settings"]["event_subscriptions"].pop("request_url").endswith("/slack/events")
    assert http["settings"]["interactivity"].pop("request_url").endswith("/slack/events")
    assert sock == http  # the same app otherwise: the two files cannot drift apart


def test_a_refused_websocket_handshake_stops_the_start_with_a_clear_error(slack_fake: FakeSlack,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler
    from slack_sdk import WebClient

    server = FakeSocketMode().start()
    slack_fake.socket_server = server
    monkeypatch.setattr(server, "issue_url", lambda: f"ws://{server.host}:{server.port}/link/?ticket=forged")
    bolt = App(client=WebClient(token="xoxb-test", base_url=slack_fake.base_url), signing_secret="s" * 32,
               token_verification_enabled=False)
    handler = SocketModeHandler(bolt, app_token=APP_TOKEN)
    try:
        with pytest.raises(socket_mode.NotConnected, match="no Socket Mode connection to Slack within 1s"):
            socket_mode.connect(handler, timeout=1)
    finally:
        server.stop()
    assert server.refused and server.refused[0].startswith("GET /link/?ticket=forged")  # a ticket it never issued
    assert server.handshakes == 0 and handler.client.closed
