"""The Slack surface over real HTTP: the Flask app (Bolt adapter) served on loopback, signed requests in
Slack's real shapes, the fake Slack Web API, and a recording dispatcher whose notes the test hands to the
real notifier (`world.deliver()`), so no Celery worker is needed outside the lifecycle test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from sqlalchemy import func, select
from werkzeug.serving import make_server

from service.core.rules import Vote
from service.operations.context import Context, RecordingDispatcher, utcnow
from service.operations.decide_request import decide_request
from service.operations.request_access import request_access
from service.settings import Settings
from service.slack.interactions import run_interaction, slack_answer
from service.store.db import migrate
from service.store.models import AccessRequest, AuditEvent, Grant
from tests.support.slack_fake import FakeSlack, SlackCall
from tests.support.slack_signing import (
    DEFAULT_SECRET,
    FORM,
    JSON,
    TASK_SIGNING_KEY,
    block_actions_body,
    event_callback_body,
    post_signed,
    slash_command_body,
    view_submission_body,
)

T = TypeVar("T")
ALICE, BOB = "U0ALICE01", "U0BOB0001"  # requesters (mapped to IAM users)
APPR1, APPR2 = "U0APPR01", "U0APPR02"  # approvers
MALLORY = "U0MALLORY"  # in the workspace, in no list of the catalogue
APPROVERS_CHANNEL, AUDIT_CHANNEL = "C0APPROVE1", "C0AUDIT01"
ACCOUNT = "123456789012"  # moto's one account

CATALOG: dict[str, Any] = {
    "settings": {"admins": ["U0ADMIN01"], "audit_channel": AUDIT_CHANNEL, "request_timeout": "2h"},
    "accounts": [{"id": ACCOUNT, "alias": "sandbox"}],
    "principals": {ALICE: f"arn:aws:iam::{ACCOUNT}:user/alice", BOB: f"arn:aws:iam::{ACCOUNT}:user/bob",
                   APPR1: f"arn:aws:iam::{ACCOUNT}:user/appr1"},
    "roles": [
        {"id": "ops-admin", "name": "Ops admin", "account": "sandbox", "role_name": "OpsAdmin", "path": "/keyturn/",
         "approvers": [APPR1, APPR2], "approvers_channel": APPROVERS_CHANNEL, "min_approvals": 2,
         "max_duration": "4h", "require_reason": True, "color": "B7CA9D"},
        {"id": "ops-read", "name": "Ops read-only", "account": "sandbox", "role_name": "OpsRead",
         "path": "/keyturn/", "approvers": [APPR1, ALICE], "max_duration": "1d", "require_reason": False},
        {"id": "ops-mfa", "name": "Ops with MFA", "account": "sandbox", "role_name": "OpsMfa", "path": "/keyturn/",
         "approvers": [APPR1], "approvers_channel": APPROVERS_CHANNEL, "require_mfa": True, "color": "FAD791"},
        {"id": "break-glass", "name": "Break glass", "account": "sandbox", "role_name": "BreakGlass",
         "path": "/keyturn/", "approvers": [APPR1, ALICE], "approvers_channel": APPROVERS_CHANNEL,
         "allow_self_approval": True},
    ],
}


def write_catalog(path: Path, roles: list[dict[str, Any]] | None = None, **settings: Any) -> Path:
    raw = {**CATALOG, "settings": {**CATALOG["settings"], **settings}, "roles": roles or CATALOG["roles"]}
    path.write_text(yaml.safe_dump(raw))
    return path


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (listeners run after the ack, in a thread)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class ServedApp:
    """A WSGI app on a loopback port in a thread (werkzeug's threaded server)."""

    def __init__(self, app: Any) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="keyturn-web", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class SlackWorld:
    base: str
    app: Any
    fake: FakeSlack
    dispatch: RecordingDispatcher
    delivered: list[str] = field(default_factory=list)

    # ---- the pieces ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.base + "/slack/events"

    @property
    def rt(self) -> Any:
        return self.app.extensions["keyturn"]

    @property
    def ctx(self) -> Context:
        ctx: Context = self.rt.ctx
        return ctx

    @property
    def notifier(self) -> Any:
        return self.app.extensions["keyturn.notifier"]

    # ---- Slack -> us, signed, over HTTP ----------------------------------------------------------
    def post(self, body: str, content_type: str = FORM, **kwargs: Any) -> requests.Response:
        return post_signed(self.url, body, content_type, **kwargs)

    def command(self, text: str = "", user: str = ALICE, key: str = "cmd", **kwargs: Any) -> requests.Response:
        return self.post(slash_command_body(text=text, user_id=user, response_url=self.fake.response_url(key),
                                            **kwargs))

    def click(self, action_id: str, value: str | int, user: str, key: str = "click",
              **kwargs: Any) -> requests.Response:
        return self.post(block_actions_body(user, action_id=action_id, value=str(value),
                                            response_url=self.fake.response_url(key), **kwargs))

    def submit(self, callback_id: str, values: dict[str, Any], user: str, metadata: str = "",
               **kwargs: Any) -> requests.Response:
        return self.post(view_submission_body(user, callback_id=callback_id, state_values=values,
                                              private_metadata=metadata, **kwargs))

    def event(self, event: dict[str, Any], **kwargs: Any) -> requests.Response:
        return self.post(event_callback_body(event), JSON, **kwargs)

    def replies(self, key: str) -> list[SlackCall]:
        """What was sent to the response_url `key` (ephemeral replies)."""
        return [c for c in self.fake.calls("response_url") if c.params.get("_key") == key]

    def reply(self, key: str, timeout: float = 10.0) -> str:
        call = self.fake.wait_for("response_url", lambda c: c.params.get("_key") == key, timeout)
        return str(call.params.get("text", ""))

    # ---- the recorded wake-ups, handed to the real notifier -------------------------------------
    def notes(self, event: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [n for n in list(self.dispatch.notes) if event is None or n[0] == event]

    def deliver(self) -> list[str]:
        """Run every recorded notification through the notifier (what the keyturn.notify task does)."""
        done = []
        while self.dispatch.notes:
            event, ids = self.dispatch.notes.pop(0)
            self.notifier.handle(event, **ids)
            done.append(event)
        self.delivered += done
        return done

    # ---- set-up shortcuts through the use cases (not the surface under test) --------------------
    def file(self, role: str, user: str = ALICE, duration: str | None = "1h", reason: str | None = "testing",
             ticket: str | None = None) -> int:
        from service.core.durations import parse_duration

        filed = request_access(self.ctx, requester=user, role_id=role, reason=reason, ticket=ticket,
                               duration=parse_duration(duration) if duration else None, team_id="T0TEAM001")
        return filed.request_id

    def approve(self, request_id: int, *approvers: str) -> int | None:
        grant_id = None
        for a in approvers:
            grant_id = decide_request(self.ctx, request_id=request_id, approver=a, vote=Vote.APPROVE).grant_id
        return grant_id

    def shifted(self, **delta: float) -> Context:
        """The context with a clock moved forward (for the sweeper)."""
        return replace(self.ctx, now=lambda: utcnow() + timedelta(**delta))

    # ---- the database -------------------------------------------------------------------------
    def request(self, request_id: int) -> AccessRequest:
        with self.ctx.store() as s:
            row = s.get(AccessRequest, request_id)
        assert row is not None
        return row

    def grant(self, grant_id: int) -> Grant:
        with self.ctx.store() as s:
            row = s.get(Grant, grant_id)
        assert row is not None
        return row

    def count(self, model: Any) -> int:
        with self.ctx.store() as s:
            return int(s.scalar(select(func.count()).select_from(model)) or 0)

    def audit(self, action: str | None = None) -> list[AuditEvent]:
        with self.ctx.store() as s:
            q = select(AuditEvent).order_by(AuditEvent.id)
            if action:
                q = q.where(AuditEvent.action == action)
            return list(s.execute(q).scalars())

    def wait(self, check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
        return wait_until(check, timeout, what)


@dataclass
class InlineDispatcher(RecordingDispatcher):
    """Records wake-ups; runs each queued Slack interaction at once, as an idle worker would (the real task and
    worker are in test_slack_lifecycle.py), through the same code and the same response_url answers."""

    app: Any = None
    inline: bool = True  # False: record only, as if no worker were running

    def interact(self, kind: str, payload: dict[str, Any]) -> None:
        super().interact(kind, payload)
        if not self.inline:
            return
        notifier = self.app.extensions["keyturn.notifier"]
        rt = self.app.extensions["keyturn"]
        run_interaction(rt.ctx, kind, payload,
                        slack_answer(payload, notifier.client, rt.settings.slack_response_origins))


def build_world(db_url: str, redis_url: str, fake: FakeSlack, catalog_path: Path) -> tuple[SlackWorld, ServedApp]:
    from service.app import create_app
    from service.runtime import build_runtime

    migrate(db_url)
    settings = Settings(database_url=db_url, redis_url=redis_url, catalog_path=catalog_path,
                        slack_bot_token="xoxb-test", slack_signing_secret=DEFAULT_SECRET,
                        task_signing_key=TASK_SIGNING_KEY, slack_response_origins=(fake.root_url,),
                        slack_api_url=fake.base_url, log_level="WARNING")
    dispatch = InlineDispatcher()
    rt = build_runtime(settings, dispatch=dispatch)
    app = create_app(settings, runtime=rt)
    dispatch.app = app
    served = ServedApp(app)
    return SlackWorld(served.url, app, fake, dispatch), served


@contextmanager
def served_world(db_url: str, redis_url: str, fake: FakeSlack, tmp_path: Path, **catalog: Any) -> Iterator[SlackWorld]:
    w, served = build_world(db_url, redis_url, fake, write_catalog(tmp_path / "catalog.yaml", **catalog))
    try:
        yield w
    finally:
        served.close()
        w.rt.engine.dispose()


@pytest.fixture
def world(db_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    """The web app on SQLite and on PostgreSQL, the fake Slack cleared, a recording dispatcher."""
    with served_world(db_url, redis_url, slack_fake, tmp_path) as w:
        yield w


@pytest.fixture
def lite(sqlite_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path) -> Iterator[SlackWorld]:
    """The same on SQLite only: for input checks whose outcome cannot depend on the database."""
    with served_world(sqlite_url, redis_url, slack_fake, tmp_path) as w:
        yield w
