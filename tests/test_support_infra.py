"""The test infrastructure itself works against the real components (no mocks)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from urllib.parse import parse_qs

import boto3
import psycopg
import pytest
import redis
import sqlalchemy as sa
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from tests.support.ports import free_port, wait_for_port
from tests.support.postgres import PostgresServer
from tests.support.processes import ProcessRegistry
from tests.support.redis_server import RedisProcess
from tests.support.slack_fake import FakeSlack
from tests.support.slack_signing import (
    DEFAULT_SECRET,
    JSON,
    block_actions_body,
    event_callback_body,
    post_signed,
    sign,
    signed_headers,
    slash_command_body,
    view_submission_body,
)

TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def engine_for(url: str) -> sa.Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url)


# ---- ports ---------------------------------------------------------------------------------------
def test_free_port_and_wait_for_port() -> None:
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.2)


# ---- moto ----------------------------------------------------------------------------------------
def test_moto_server_serves_iam_through_env_endpoint(moto_reset: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == moto_reset
    iam = boto3.client("iam")  # no endpoint given: AWS_ENDPOINT_URL must route it to moto
    assert iam.meta.endpoint_url == moto_reset
    iam.create_role(RoleName="keyturn-probe", AssumeRolePolicyDocument=TRUST)
    assert iam.get_role(RoleName="keyturn-probe")["Role"]["RoleName"] == "keyturn-probe"
    assert boto3.client("sts").get_caller_identity()["Account"]


@pytest.mark.parametrize("round_", [1, 2])
def test_moto_reset_starts_each_test_with_empty_iam(moto_reset: str, round_: int) -> None:
    iam = boto3.client("iam")
    assert iam.list_roles()["Roles"] == []
    iam.create_role(RoleName=f"leftover-{round_}", AssumeRolePolicyDocument=TRUST)


# ---- Redis ---------------------------------------------------------------------------------------
def test_redis_url_answers_ping(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping()
    client.set("keyturn:probe", "1", ex=5)
    assert client.get("keyturn:probe") == b"1"


def test_private_redis_can_be_restarted_and_killed(private_redis: RedisProcess) -> None:
    client = redis.Redis.from_url(private_redis.url(), socket_timeout=2)
    client.set("k", "v")
    private_redis.restart()
    assert client.ping() and client.get("k") is None  # same port, empty again (no persistence)
    private_redis.kill()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(private_redis.url(), socket_connect_timeout=0.5).ping()
    private_redis.start()
    assert client.ping()


# ---- databases -----------------------------------------------------------------------------------
@pytest.mark.parametrize("round_", [1, 2])
def test_db_url_is_empty_and_writable(db_url: str, round_: int) -> None:
    engine = engine_for(db_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, note TEXT)"))
            conn.execute(sa.text("INSERT INTO probe (id, note) VALUES (:i, :n)"), {"i": round_, "n": "x"})
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM probe")).scalar_one() == 1
    finally:
        engine.dispose()


def test_db_url_ids(request: pytest.FixtureRequest, db_url: str) -> None:
    assert request.node.callspec.id in {"sqlite", "postgresql"}
    assert db_url.startswith(("sqlite:///", "postgresql://"))


def test_postgres_drop_survives_open_connections(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    engine = engine_for(url)
    conn = engine.connect()
    conn.execute(sa.text("SELECT 1"))
    postgres_server.drop_database(url)  # WITH (FORCE): a leaked pool or worker must not block it
    conn.invalidate()
    engine.dispose()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.admin_url) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None


# ---- fake Slack ----------------------------------------------------------------------------------
def web_client(fake: FakeSlack, **kwargs: object) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url, **kwargs)  # type: ignore[arg-type]


def test_fake_slack_records_post_message(slack_fake: FakeSlack) -> None:
    assert os.environ["SLACK_API_URL"] == slack_fake.base_url
    client = web_client(slack_fake)
    first = client.chat_postMessage(channel="C0APPROVE1", text="hello", blocks=[{"type": "divider"}])
    second = client.chat_postMessage(channel="U0ALICE001", text="dm")
    assert first["ok"] and first["channel"] == "C0APPROVE1" and first["message"]["text"] == "hello"
    assert second["channel"] == "DU0ALICE001"
    assert float(second["ts"]) > float(first["ts"])
    call = slack_fake.wait_for("chat.postMessage", lambda c: c.get("text") == "hello")
    assert call.get("blocks") == [{"type": "divider"}] and call.token == "xoxb-test"
    assert [c.params["text"] for c in slack_fake.calls("chat.postMessage")] == ["hello", "dm"]


def test_fake_slack_answers_the_other_methods(slack_fake: FakeSlack) -> None:
    client = web_client(slack_fake)
    slack_fake.usergroups["S0APPROVER"] = ["U1", "U2"]
    assert client.auth_test()["user_id"]
    assert client.conversations_open(users="U0BOB00001")["channel"]["id"] == "DU0BOB00001"
    user = client.users_info(user="U0BOB00001")["user"]
    assert user["tz"] == "Europe/Paris" and user["tz_offset"] in (3600, 7200)
    assert client.usergroups_users_list(usergroup="S0APPROVER")["users"] == ["U1", "U2"]
    assert client.chat_postEphemeral(channel="C1", user="U1", text="psst")["message_ts"]
    assert client.chat_update(channel="C1", ts="1.000100", text="new")["ts"] == "1.000100"
    view = client.views_open(
        trigger_id="t", view={"type": "modal", "callback_id": "request", "title": {"type": "plain_text", "text": "x"}}
    )
    assert view["view"]["id"].startswith("V") and view["view"]["callback_id"] == "request"
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["ok"]
    assert client.views_update(view_id="V1", view={"type": "modal"})["view"]["id"] == "V1"
    with pytest.raises(SlackApiError) as err:
        WebClient(token="xoxb-wrong", base_url=slack_fake.base_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"


def test_fake_slack_programmed_errors(slack_fake: FakeSlack) -> None:
    client = web_client(slack_fake)
    slack_fake.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C404", text="x")
    assert err.value.response.status_code == 200 and err.value.response["error"] == "channel_not_found"
    slack_fake.fail_next("chat.postMessage", status=500)
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 500
    assert client.chat_postMessage(channel="C1", text="x")["ok"]  # faults are one-shot


def test_fake_slack_429_without_retry_handler_raises(slack_fake: FakeSlack) -> None:
    slack_fake.fail_next("chat.postMessage", status=429, retry_after=1)
    with pytest.raises(SlackApiError) as err:
        web_client(slack_fake).chat_postMessage(channel="C1", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["retry-after"] in ("1", ["1"])


def test_fake_slack_429_with_rate_limit_handler_retries(slack_fake: FakeSlack) -> None:
    client = web_client(slack_fake, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    slack_fake.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()
    assert client.chat_postMessage(channel="C1", text="x")["ok"]
    assert time.monotonic() - started >= 1.0  # it honoured Retry-After
    assert [c.status for c in slack_fake.calls("chat.postMessage")] == [429, 200]


def test_fake_slack_wait_for_sees_calls_from_other_threads(slack_fake: FakeSlack) -> None:
    client = web_client(slack_fake)
    threading.Timer(0.3, lambda: client.chat_postMessage(channel="C9", text="later")).start()
    assert slack_fake.wait_for("chat.postMessage", timeout=5).params["channel"] == "C9"
    with pytest.raises(AssertionError, match=r"no matching views\.open"):
        slack_fake.wait_for("views.open", timeout=0.2)


# ---- signed Slack requests -----------------------------------------------------------------------
def test_signature_verifies_with_slack_sdk() -> None:
    body = slash_command_body(text="admin-prod 1h incident 42", user_id="U0ALICE001")
    headers = signed_headers(body, "test-secret")
    verifier = SignatureVerifier("test-secret")
    assert verifier.is_valid_request(body, headers)
    assert headers["X-Slack-Signature"] == sign("test-secret", headers["X-Slack-Request-Timestamp"], body)
    assert not SignatureVerifier("other-secret").is_valid_request(body, headers)
    stale = signed_headers(body, "test-secret", timestamp=int(time.time()) - 600)
    assert not verifier.is_valid_request(body, stale)


def test_post_signed_sends_verifiable_request(slack_fake: FakeSlack) -> None:
    body = event_callback_body({"type": "app_home_opened", "user": "U1", "tab": "home"})
    resp = post_signed(slack_fake.response_url("probe"), body, content_type=JSON)
    assert resp.status_code == 200
    call = slack_fake.wait_for("response_url")
    assert call.params["_key"] == "probe" and call.params["event"]["type"] == "app_home_opened"
    assert SignatureVerifier(DEFAULT_SECRET).is_valid_request(call.raw_body, call.headers)


def test_payload_shapes_are_understood_by_bolt(slack_fake: FakeSlack) -> None:
    seen: dict[str, dict[str, object]] = {}
    app = App(client=web_client(slack_fake), signing_secret="test-secret")

    @app.command("/access")
    def _command(ack, command) -> None:  # type: ignore[no-untyped-def]
        ack()
        seen["command"] = command

    @app.action("approve")
    def _action(ack, body) -> None:  # type: ignore[no-untyped-def]
        ack()
        seen["action"] = body

    @app.view("request")
    def _view(ack, view, body) -> None:  # type: ignore[no-untyped-def]
        ack()
        seen["view"] = body

    bodies = [
        slash_command_body(text="admin-prod 1h", user_id="U0ALICE001"),
        block_actions_body(
            "U0BOB00001", "T0TEAM001", "approve", "req-42", message_ts="1.000100", channel_id="C0APPROVE1"
        ),
        view_submission_body("U0ALICE001", "T0TEAM001", "request", {"role": {"pick": "admin-prod"}}, "meta"),
    ]
    for body in bodies:
        response = app.dispatch(BoltRequest(body=body, headers=signed_headers(body, "test-secret")))
        assert response.status == 200, response.body
    assert seen["command"]["text"] == "admin-prod 1h" and seen["command"]["user_id"] == "U0ALICE001"
    action = seen["action"]
    assert action["user"]["id"] == "U0BOB00001" and action["team"]["id"] == "T0TEAM001"  # type: ignore[index]
    assert action["actions"][0]["value"] == "req-42"  # type: ignore[index]
    assert action["container"]["message_ts"] == "1.000100"  # type: ignore[index]
    values = seen["view"]["view"]["state"]["values"]  # type: ignore[index]
    assert values["role"]["pick"]["value"] == "admin-prod" and seen["view"]["view"]["private_metadata"] == "meta"
    forged = slash_command_body(text="x")
    bad = app.dispatch(BoltRequest(body=forged, headers=signed_headers(forged, "wrong-secret")))
    assert bad.status == 401
    assert parse_qs(forged)["command"] == ["/access"]


# ---- subprocesses --------------------------------------------------------------------------------
def test_spawn_logs_stops_and_kills(spawn: ProcessRegistry) -> None:
    code = "import sys, time; print('ready', flush=True); print('err', file=sys.stderr, flush=True); time.sleep(60)"
    proc = spawn([sys.executable, "-c", code], name="sleeper")
    proc.wait_for_log(r"ready", timeout=10)
    assert proc.alive and "err" in proc.log_text()
    proc.stop(timeout=5)
    assert not proc.alive and proc.returncode == -15
    proc.start().wait_for_log(r"ready(.|\n)*ready", timeout=10)
    assert proc.kill() == -9 and not proc.alive


def test_kill_takes_down_the_process_group(spawn: ProcessRegistry) -> None:
    child = "import time; time.sleep(60)"
    code = (
        f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
        "print('child', p.pid, flush=True); time.sleep(60)"
    )
    proc = spawn([sys.executable, "-c", code], name="parent")
    child_pid = int(proc.wait_for_log(r"child (\d+)", timeout=10).group(1))
    proc.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child_pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):  # dead, maybe not reaped yet
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the child survived kill()")
