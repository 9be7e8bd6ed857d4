"""A fake Slack Web API on loopback: records every call and answers like Slack.

Point a `slack_sdk.WebClient(base_url=fake.base_url)` at it (that is `http://127.0.0.1:PORT/api/`).
Requests may be form-encoded, JSON or GET query strings, as WebClient sends them.
Also serves `response_url`s: `fake.response_url("key")` -> calls recorded with method "response_url".
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

TEAM_ID = "T0TEAM001"
BOT_USER_ID = "U0BOT0001"
BOT_ID = "B0BOT0001"
APP_TOKEN = "xapp-1-A0KEYTURN-1234567890-0123456789abcdef0123456789abcdef"  # what apps.connections.open accepts
AUTH_TEST = dict(
    ok=True,
    url="https://keyturn-test.slack.com/",
    team="Keyturn Test",
    user="keyturn",
    team_id=TEAM_ID,
    user_id=BOT_USER_ID,
    bot_id=BOT_ID,
    is_enterprise_install=False,
)
Handler = Callable[["SlackCall"], dict[str, Any]]


@dataclass(frozen=True)
class SlackCall:
    method: str  # "chat.postMessage", or "response_url"
    params: dict[str, Any]  # query + form + JSON body merged; form values stay strings
    headers: dict[str, str]  # lower-cased names
    at: float  # time.time() when received
    http_method: str = "POST"
    raw_body: bytes = b""
    status: int = 200  # what the fake answered
    response: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A parameter, JSON-decoded when it was sent form-encoded (blocks, view, ...)."""
        value = self.params.get(key, default)
        if isinstance(value, str) and value[:1] in "[{":
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth.removeprefix("Bearer ").strip() if auth else self.params.get("token")


@dataclass
class _Fault:
    status: int
    error: str | None
    retry_after: int | None
    delay: float


class FakeSlack:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = "xoxb-test") -> None:
        self.expected_token = token
        self._lock = threading.Condition()
        self._calls: list[SlackCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._handlers: dict[str, Handler] = {}
        self._last_ts = 0
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        # Socket Mode: apps.connections.open hands out this server's URLs for this app-level token.
        self.socket_server: Any = None  # a tests.support.socket_mode_fake.FakeSocketMode
        self.app_token = APP_TOKEN
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-slack", daemon=True)
        self.host, self.port = self._server.server_address[0], self._server.server_address[1]

    # ---- lifecycle -------------------------------------------------------------------------------
    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/api/"

    def response_url(self, key: str = "default") -> str:
        return f"{self.root_url}/response/{key}"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def reset(self) -> None:
        """Forget calls, faults, custom handlers, users and usergroups (ts keep increasing)."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self._handlers.clear()
            self.users.clear()
            self.usergroups.clear()
            self.socket_server, self.app_token = None, APP_TOKEN

    # ---- programming it --------------------------------------------------------------------------
    def fail_next(
        self,
        method: str,
        status: int | None = None,
        *,
        error: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Make the next `times` calls of `method` fail.

        status=429 (the default without `error`) answers HTTP 429 + Retry-After (default 1);
        error="channel_not_found" answers HTTP 200 {"ok": false, "error": ...}; status=500 answers 500.
        `delay` sleeps before answering (to exercise client timeouts).
        """
        if status is None:
            status = 200 if error else 429
        if status == 429 and retry_after is None:
            retry_after = 1
        fault = _Fault(status, error or ("ratelimited" if status == 429 else None), retry_after, delay)
        with self._lock:
            self._faults.setdefault(method, []).extend([fault] * times)

    def on(self, method: str, handler: Handler | dict[str, Any]) -> None:
        """Answer `method` with a custom handler (call -> JSON dict) or a fixed dict; a "_status" key in the
        answer sets the HTTP status (default 200)."""
        with self._lock:
            self._handlers[method] = handler if callable(handler) else (lambda _c, _r=handler: dict(_r))

    # ---- inspecting it ---------------------------------------------------------------------------
    def calls(self, method: str | None = None) -> list[SlackCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def wait_for(
        self, method: str, predicate: Callable[[SlackCall], bool] | None = None, timeout: float = 10.0
    ) -> SlackCall:
        """The first recorded call of `method` matching `predicate`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for call in self._calls:
                    if call.method == method and (predicate is None or predicate(call)):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{c.method} {c.params}" for c in self._calls]
                    raise AssertionError(
                        f"no matching {method} call within {timeout}s; recorded calls:\n" + "\n".join(seen)
                    )
                self._lock.wait(min(remaining, 0.1))

    # ---- answering -------------------------------------------------------------------------------
    def _next_ts(self) -> str:
        with self._lock:
            self._last_ts = max(int(time.time() * 1_000_000), self._last_ts + 1)
            value = self._last_ts
        return f"{value // 1_000_000}.{value % 1_000_000:06d}"

    def _user(self, user_id: str) -> dict[str, Any]:
        overrides = self.users.get(user_id, {})
        tz = overrides.get("tz", "Europe/Paris")
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
        name = overrides.get("name", f"user-{user_id.lower()}")
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": TEAM_ID,
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "is_bot": False,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": int(offset.total_seconds()) if offset is not None else 0,
            "profile": {"real_name": name.title(), "display_name": name, "email": f"{name}@example.com"},
        }
        user.update(overrides)
        return user

    def _message(self, call: SlackCall, ts: str) -> dict[str, Any]:
        text = call.params.get("text", "")
        msg: dict[str, Any] = dict(type="message", user=BOT_USER_ID, bot_id=BOT_ID, ts=ts, team=TEAM_ID, text=text)
        if call.get("blocks") is not None:
            msg["blocks"] = call.get("blocks")
        return msg

    def _answer(self, call: SlackCall) -> dict[str, Any]:
        m, p = call.method, call.params
        handler = self._handlers.get(m)
        if handler is not None:
            return handler(call)
        if m == "response_url":
            return {"ok": True}
        if m == "apps.connections.open":
            return self._connections_open(call)
        if self.expected_token is not None:
            if not call.token:
                return {"ok": False, "error": "not_authed"}
            if call.token != self.expected_token:
                return {"ok": False, "error": "invalid_auth"}
        channel = str(p.get("channel", ""))
        if channel[:1] in ("U", "W"):
            channel = "D" + channel  # posting to a user id lands in the DM with them
        if m == "chat.postMessage":
            ts = self._next_ts()
            return {"ok": True, "channel": channel, "ts": ts, "message": self._message(call, ts)}
        if m == "chat.update":
            ts = str(p.get("ts", ""))
            return dict(ok=True, channel=channel, ts=ts, text=p.get("text", ""), message=self._message(call, ts))
        if m == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if m == "conversations.open":
            users = [u for u in str(p.get("users", "")).split(",") if u]
            if not users:
                return {"ok": False, "error": "users_list_not_supplied"}
            cid = "D" + users[0] if len(users) == 1 else "G" + "".join(users)
            return {"ok": True, "channel": {"id": cid}}
        if m in ("views.open", "views.publish", "views.update", "views.push"):
            view = dict(call.get("view") or {})
            vid = p.get("view_id") or "V" + hashlib.sha1(self._next_ts().encode()).hexdigest()[:10].upper()
            view.update(id=vid, team_id=TEAM_ID, hash=f"{int(time.time())}.{vid}", app_id="A0KEYTURN")
            view.setdefault("private_metadata", "")
            view.setdefault("callback_id", "")
            view.setdefault("state", {"values": {}})
            return {"ok": True, "view": view}
        if m == "users.info":
            return {"ok": True, "user": self._user(str(p.get("user", "")))}
        if m == "usergroups.users.list":
            group = str(p.get("usergroup", ""))
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(self.usergroups[group])}
        if m == "auth.test":
            return dict(AUTH_TEST)
        if m in ("chat.delete", "reactions.add", "reactions.remove", "api.test", "conversations.join"):
            return {"ok": True, "channel": channel, "ts": p.get("ts")}
        return {"ok": False, "error": "unknown_method"}

    def _connections_open(self, call: SlackCall) -> dict[str, Any]:
        """Slack's answers: only an app-level token opens a connection, and only with Socket Mode on."""
        if not call.token:
            return {"ok": False, "error": "not_authed"}
        if not call.token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if call.token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        if self.socket_server is None:
            return {"ok": False, "error": "socket_mode_not_enabled"}  # hypothetical; Slack's is not documented
        return {"ok": True, "url": self.socket_server.issue_url()}

    def _handle(self, req: BaseHTTPRequestHandler, http_method: str) -> None:
        url = urlsplit(req.path)
        params: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if raw and ctype == "application/json":
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"_unparsed": raw.decode(errors="replace")}
            params.update(body if isinstance(body, dict) else {"_json": body})
        elif raw and ctype == "application/x-www-form-urlencoded":
            params.update(parse_qsl(raw.decode(), keep_blank_values=True))
        if url.path.startswith("/api/"):
            method = url.path.removeprefix("/api/").strip("/")
        elif url.path.startswith("/response/"):
            method, params["_key"] = "response_url", url.path.removeprefix("/response/")
        else:
            method = url.path
        headers = {k.lower(): v for k, v in req.headers.items()}
        call = SlackCall(method, params, headers, time.time(), http_method, raw)
        with self._lock:
            queue = self._faults.get(method)
            fault = queue.pop(0) if queue else None
        extra_headers: dict[str, str] = {}
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            status, answer = fault.status, {"ok": False, "error": fault.error or "internal_error"}
            if fault.retry_after is not None:
                extra_headers["Retry-After"] = str(fault.retry_after)
        else:
            try:
                answer = self._answer(call)
                status = int(answer.pop("_status", 200))  # a custom handler may answer with an HTTP error
            except Exception as exc:  # a broken custom handler must show up, not hang the client
                status, answer = 500, {"ok": False, "error": f"fake_slack_error: {exc!r}"}
        call = SlackCall(method, params, headers, call.at, http_method, raw, status, answer)
        with self._lock:
            self._calls.append(call)
            self._lock.notify_all()
        data = json.dumps(answer).encode()
        req.send_response(status)
        req.send_header("Content-Type", "application/json; charset=utf-8")
        req.send_header("Content-Length", str(len(data)))
        for name, value in extra_headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return _Handler
