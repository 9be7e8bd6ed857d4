"""A programmable fault-injecting HTTP proxy on loopback, in front of the moto server.

Every request is forwarded to `upstream` unless a fault says otherwise. Faults are keyed by the AWS
query-protocol `Action` (IAM: `Action=UpdateAssumeRolePolicy&...` in the form-encoded body) and are
consumed first-in first-out, each for a number of requests (`times`, None = forever):

- `hold(action, seconds)`: wait, then forward (a slow or stuck call in flight); `release()` ends holds early;
- `throttle(action)`: answer IAM's `Throttling` error (HTTP 400) without forwarding;
- `fail(action, status=500|503)`: answer a server error without forwarding;
- `error(action, code, status)`: answer any AWS error code without forwarding (e.g. `AccessDenied`, 403);
- `drop_response(action)`: forward, then close the connection without answering
  (a write that succeeded but whose response was lost);
- `rate_limit(action, per_second)`: forward at most N per rolling second, throttle beyond;
- `hold_response(action, seconds)`: forward at once, then hold the answer (a write IAM applied whose
  caller has not heard back yet: kill the caller now and the write is done but never recorded);
- `stale_read(write, read, times)`: after a `write` passes, answer the next `times` `read`s of the same
  resource with the response the last forwarded `read` got before the write (IAM's eventual consistency).

Everything is counted and every request body is recorded per action, thread-safely.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                        "transfer-encoding", "upgrade", "host", "content-length"})
ERRORS = {  # status, Type, Code, Message
    "Throttling": (400, "Sender", "Throttling", "Rate exceeded"),
    500: (500, "Receiver", "InternalFailure", "We encountered an internal error. Please try again."),
    503: (503, "Receiver", "ServiceUnavailable", "Service is unavailable. Please try again."),
}


def error_xml(code: str, kind: str, message: str) -> bytes:
    return (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            "<RequestId>x</RequestId></ErrorResponse>").encode()


@dataclass
class Fault:
    kind: str  # hold | throttle | fail | drop | hold_response | stale
    times: int | None = 1
    seconds: float = 0.0
    status: int = 500
    code: str = ""  # the AWS error code of an `error` fault


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it did with it."""

    action: str
    body: str
    params: dict[str, list[str]]
    outcome: str  # forwarded | held+forwarded | forwarded+held | throttled | failed-500 | dropped | stale | …


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)
        self._rates: dict[str, tuple[int, deque[float]]] = {}
        self._seen: list[Seen] = []
        # stale reads: (read action, resource) -> the last forwarded answer; answers armed to be served
        self._last_read: dict[tuple[str, str], tuple[int, str, list[tuple[str, str]], bytes]] = {}
        self._stale_armed: dict[str, list[tuple[str, int]]] = defaultdict(list)  # write -> [(read, times)]
        self._stale_due: dict[tuple[str, str], deque[tuple[int, str, list[tuple[str, str]], bytes]]] = \
            defaultdict(deque)
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a caller hanging up on a dropped or held answer is part of the game, not news

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()  # wakes held requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the proxy first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- programming faults ------------------------------------------------------------------------
    def _add(self, action: str, fault: Fault) -> None:
        with self._lock:
            self._faults[action].append(fault)

    def hold(self, action: str, seconds: float, times: int | None = 1) -> None:
        self._add(action, Fault("hold", times, seconds=seconds))

    def release(self) -> None:
        """Let every request being held go on now (later holds wait again)."""
        with self._lock:
            released, self._release = self._release, threading.Event()
        released.set()

    def throttle(self, action: str, times: int | None = 1) -> None:
        self._add(action, Fault("throttle", times))

    def fail(self, action: str, status: int = 500, times: int | None = 1) -> None:
        if status not in (500, 503):
            raise ValueError("fail() answers 500 or 503")
        self._add(action, Fault("fail", times, status=status))

    def error(self, action: str, code: str, status: int = 403, times: int | None = 1) -> None:
        """Answer the AWS error `code` with HTTP `status` (a client error unless status >= 500)."""
        self._add(action, Fault("error", times, status=status, code=code))

    def drop_response(self, action: str, times: int | None = 1) -> None:
        self._add(action, Fault("drop", times))

    def hold_response(self, action: str, seconds: float, times: int | None = 1) -> None:
        self._add(action, Fault("hold_response", times, seconds=seconds))

    def stale_read(self, write: str = "UpdateAssumeRolePolicy", read: str = "GetRole", times: int = 1) -> None:
        """Arm once: the next `write` makes the following `times` `read`s of its resource see the old answer."""
        with self._lock:
            self._stale_armed[write].append((read, times))

    def rate_limit(self, action: str, per_second: int) -> None:
        with self._lock:
            self._rates[action] = (per_second, deque())

    def clear(self) -> None:
        """Forget every programmed fault and rate limit (counts and recorded bodies are kept)."""
        with self._lock:
            self._faults.clear()
            self._rates.clear()
            self._stale_armed.clear()
            self._stale_due.clear()

    # ---- what happened -----------------------------------------------------------------------------
    def count(self, action: str, outcome: str | None = None) -> int:
        with self._lock:
            return sum(1 for s in self._seen if s.action == action and (outcome is None or s.outcome == outcome))

    def seen(self, action: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self._seen if action is None or s.action == action]

    def bodies(self, action: str) -> list[dict[str, list[str]]]:
        """The decoded form parameters of every request for `action`, in arrival order."""
        return [s.params for s in self.seen(action)]

    def wait_for(self, action: str, count: int = 1, timeout: float = 30.0) -> None:
        """Block until the proxy has received at least `count` requests for `action`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while sum(1 for s in self._seen if s.action == action) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the proxy saw {self._count_locked(action)} {action}, wanted {count}")
                self._changed.wait(left)

    def _count_locked(self, action: str) -> int:
        return sum(1 for s in self._seen if s.action == action)

    # ---- serving -----------------------------------------------------------------------------------
    def _take(self, action: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(action)
            if not queue:
                return None
            fault = queue[0]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.popleft()
            return fault

    def _over_rate(self, action: str) -> bool:
        with self._lock:
            if action not in self._rates:
                return False
            limit, stamps = self._rates[action]
            now = time.monotonic()
            while stamps and now - stamps[0] >= 1.0:
                stamps.popleft()
            if len(stamps) >= limit:
                return True
            stamps.append(now)
            return False

    def _record(self, action: str, body: str, params: dict[str, list[str]], outcome: str) -> None:
        with self._changed:
            self._seen.append(Seen(action, body, params, outcome))
            self._changed.notify_all()

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        body = raw.decode("utf-8", errors="replace")
        params = parse_qs(body, keep_blank_values=True)
        query = parse_qs(urlsplit(req.path).query)
        action = (params.get("Action") or query.get("Action") or [""])[0]
        resource = _resource(params)
        stale = self._take_stale(action, resource)
        if stale is not None:
            self._record(action, body, params, "stale")
            return self._answer(req, *stale)
        fault = self._take(action)
        if fault is None and self._over_rate(action):
            self._record(action, body, params, "rate-limited")
            return self._answer_error(req, "Throttling")
        if fault is None:
            self._record(action, body, params, "forwarded")
            return self._forward(req, raw)
        if fault.kind == "throttle":
            self._record(action, body, params, "throttled")
            return self._answer_error(req, "Throttling")
        if fault.kind == "fail":
            self._record(action, body, params, f"failed-{fault.status}")
            return self._answer_error(req, fault.status)
        if fault.kind == "error":
            self._record(action, body, params, f"error-{fault.code}")
            kind = "Receiver" if fault.status >= 500 else "Sender"
            return self._answer_error(req, (fault.status, kind, fault.code, f"injected {fault.code}"))
        if fault.kind == "hold_response":
            # recorded once upstream has answered: a count of it means the write is done in IAM
            return self._forward(req, raw, hold=fault.seconds, seen=Seen(action, body, params, "forwarded+held"))
        if fault.kind == "hold":
            self._record(action, body, params, "held+forwarded")  # recorded on arrival, before the wait
            with self._lock:
                release = self._release
            release.wait(fault.seconds)
            return self._forward(req, raw)
        self._record(action, body, params, "dropped")
        self._forward(req, raw, drop=True)

    def _answer_error(self, req: BaseHTTPRequestHandler, which: str | int | tuple[int, str, str, str]) -> None:
        status, kind, code, message = which if isinstance(which, tuple) else ERRORS[which]
        payload = error_xml(code, kind, message)
        req.send_response(status)
        req.send_header("Content-Type", "text/xml")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    def _take_stale(self, action: str, resource: str) -> tuple[int, str, list[tuple[str, str]], bytes] | None:
        with self._lock:
            due = self._stale_due.get((action, resource))
            return due.popleft() if due else None

    def _arm_stale(self, action: str, resource: str) -> None:
        """A write passing with a stale read armed: queue the pre-write answer of its resource's read."""
        with self._lock:
            armed = self._stale_armed.get(action)
            old = self._last_read.get((armed[0][0], resource)) if armed else None
            if not armed or old is None:
                return  # nothing armed, or no earlier read to serve: stays armed for the next write
            read, times = armed.pop(0)
            self._stale_due[(read, resource)].extend([old] * times)

    def _answer(self, req: BaseHTTPRequestHandler, status: int, reason: str, headers: list[tuple[str, str]],
                payload: bytes) -> None:
        req.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP | {"server", "date"}:
                req.send_header(name, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(payload)

    def _forward(self, req: BaseHTTPRequestHandler, raw: bytes, drop: bool = False, hold: float = 0.0,
                 seen: Seen | None = None) -> None:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["Host"] = f"{self.upstream_host}:{self.upstream_port}"
            conn.request(req.command, req.path, body=raw if raw else None, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            status, reason, out_headers = resp.status, resp.reason, resp.getheaders()
        finally:
            conn.close()
        params = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        if status == 200 and params.get("Action"):
            self._arm_stale(params["Action"][0], _resource(params))  # a write went through: arm first
            with self._lock:
                self._last_read[(params["Action"][0], _resource(params))] = (status, reason, out_headers, payload)
        if seen is not None:
            self._record(seen.action, seen.body, seen.params, seen.outcome)
        if hold:
            with self._lock:
                release = self._release
            release.wait(hold)
        if drop:
            # The upstream did the work; the caller never hears about it.
            req.close_connection = True
            with _suppress_socket_errors():
                req.connection.shutdown(socket.SHUT_RDWR)
            return
        with _suppress_socket_errors():  # a held answer's caller may be dead by now
            self._answer(req, status, reason, out_headers, payload)


def _resource(params: dict[str, list[str]]) -> str:
    """Which resource a request names: its parameters but the action, version and document."""
    skip = {"Action", "Version", "PolicyDocument"}
    return "&".join(f"{k}={v[0]}" for k, v in sorted(params.items()) if k not in skip and v)


@contextmanager
def _suppress_socket_errors() -> Iterator[None]:
    try:
        yield
    except OSError:
        pass
