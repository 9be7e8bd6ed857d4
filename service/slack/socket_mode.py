"""`keyturn socket`: Slack over Socket Mode instead of the HTTP endpoint (KEYTURN_SLACK_MODE=socket).

The process dials out to Slack (apps.connections.open with the app-level token, then a WebSocket) and runs
every envelope through the one Bolt app that create_app builds: the same workspace and identity middleware,
the same listeners, the same acknowledgements (an envelope is acknowledged with `{"envelope_id": ...}`, a slash
command's ephemeral answer riding on it as its payload) and the same sealed hand-off to the workers. Nothing of
Keyturn has to be reachable from the internet; the web still serves /healthz, /readyz, /metrics and the REST API.

Slack's built-in client (slack_sdk.socket_mode.builtin) needs no dependency beyond slack_sdk. It reconnects by
itself when Slack asks (a `disconnect` envelope, reason refresh_requested, every few hours), when Slack closes
the socket or when the network drops; Slack redelivers what was not acknowledged, and the listeners' own
de-duplication (trigger ids, one vote per approver, event ids) makes a redelivery do nothing twice.

Health: while connected the process touches a file (HEALTH_FILE) every few seconds; `keyturn socket --check`
exits 0 while that file is fresh, which is what a container healthcheck runs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import stat
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from service.settings import Settings, SettingsError, slack_problems

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from service.runtime import Runtime

log = logging.getLogger(__name__)

HEALTH_FILE = Path("/tmp/keyturn-socket-alive")  # noqa: S108 - touched while connected; the healthcheck reads it
HEALTH_MAX_AGE = 30.0  # seconds: older than this, `keyturn socket --check` fails
PING_INTERVAL = 10.0  # seconds between WebSocket pings; a connection silent for 4 of them is replaced
TOUCH_EVERY = 5.0  # seconds between touches of the health file
CONNECT_TIMEOUT = 15.0  # seconds the first connection may take before the process gives up


class NotConnected(Exception):
    """Slack refused the app-level token, or no WebSocket could be opened at start."""


def socket_problems(settings: Settings) -> list[str]:
    """What stops the socket process from starting, one line each naming the variable."""
    if settings.slack_mode != "socket":
        return [f"KEYTURN_SLACK_MODE is {settings.slack_mode!r}: set KEYTURN_SLACK_MODE=socket on every Keyturn "
                "process (the web then leaves /slack/events out) and turn Socket Mode on in the Slack app "
                "(config/slack-manifest.socket.yaml)"]
    return slack_problems(settings)


def build_handler(settings: Settings, *, runtime: Runtime | None = None) -> SocketModeHandler:
    """The Socket Mode handler around create_app's Bolt app; raises SettingsError before anything connects
    (`runtime`: create_app's, for tests)."""
    from slack_bolt import App
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from service.app import create_app

    problems = socket_problems(settings)
    if problems:
        raise SettingsError("Keyturn cannot serve Slack over Socket Mode with these settings:\n  "
                            + "\n  ".join(problems))
    app = create_app(settings, runtime=runtime)
    bolt: App = app.extensions["keyturn.bolt"]
    handler = SocketModeHandler(bolt, app_token=settings.slack_app_token, ping_interval=PING_INTERVAL)
    client = handler.client

    def _reconnect() -> None:
        try:
            client.connect_to_new_endpoint()
        except Exception:  # a refused token, Slack down: logged; the client's monitor keeps trying
            log.exception("could not reconnect to Slack over Socket Mode; retrying every %.0f s", PING_INTERVAL)

    def _replace_closed(_code: int, _reason: str | None) -> None:
        # slack_sdk tries to reconnect while the closed socket still counts as connected, and so leaves it to
        # its monitor (every PING_INTERVAL); a moment later the socket is gone and a new one opens at once.
        if client.auto_reconnect_enabled and not client.closed:
            threading.Timer(0.2, _reconnect).start()

    client.on_close_listeners.append(_replace_closed)
    return handler


def connect(handler: SocketModeHandler, timeout: float = CONNECT_TIMEOUT) -> None:
    """Open the first connection, or raise NotConnected saying why."""
    from slack_sdk.errors import SlackApiError

    try:
        handler.connect()
    except SlackApiError as exc:
        handler.close()
        error = exc.response.get("error")
        raise NotConnected(f"Slack refused apps.connections.open ({error}): check SLACK_APP_TOKEN (an App-Level "
                           "Token with the connections:write scope, xapp-...) and that Socket Mode is on in the "
                           "Slack app") from exc
    deadline = time.monotonic() + timeout
    while not handler.client.is_connected():  # the handshake failed: the client's monitor retries
        if time.monotonic() > deadline:
            handler.close()
            raise NotConnected(f"no Socket Mode connection to Slack within {timeout:.0f}s (see the log above)")
        time.sleep(0.1)


def serve(handler: SocketModeHandler, stop: threading.Event, health_file: Path | None = HEALTH_FILE) -> None:
    """Connect, then keep `health_file` fresh while connected until `stop` is set; then close the socket."""
    connect(handler)
    log.info("connected to Slack over Socket Mode")
    try:
        while not stop.is_set():
            if health_file is not None and handler.client.is_connected():
                _touch(health_file)
            stop.wait(TOUCH_EVERY)
    finally:
        log.info("closing the Socket Mode connection")
        if health_file is not None and _ours(health_file):
            health_file.unlink(missing_ok=True)
        _wake_reader(handler)
        handler.close()


def _wake_reader(handler: SocketModeHandler) -> None:
    """Shut the socket down so the client's reader thread, blocked in recv() for up to its 3 s timeout, returns
    now (closing a socket does not wake a recv() on Linux): a stop then takes milliseconds."""
    sock = getattr(handler.client.current_session, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _own_file(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


def _ours(health_file: Path) -> bool:
    """The path is a plain file of this user's, not a link (HEALTH_FILE is in the shared /tmp)."""
    try:
        return _own_file(health_file.lstat())
    except OSError:
        return False


def _touch(health_file: Path) -> None:
    """Mark the file fresh without following a link at its path or writing another user's file there (another
    local user may have made either at the fixed /tmp name); a failure is logged and serving goes on."""
    try:
        fd = os.open(health_file, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("cannot touch the health file %s (%s): keyturn socket --check will fail", health_file,
                    exc.strerror)
        return
    try:
        if _own_file(os.fstat(fd)):
            os.utime(fd)
        else:
            log.warning("the health file %s belongs to another user: not touched, keyturn socket --check will "
                        "fail", health_file)
    finally:
        os.close(fd)


def alive(health_file: Path = HEALTH_FILE, max_age: float = HEALTH_MAX_AGE, *, now: float | None = None) -> bool:
    """Whether a `keyturn socket` process was connected within the last `max_age` seconds: the health file is
    this user's own plain file (not a link, not another user's) and fresh."""
    try:
        st = health_file.lstat()
    except OSError:
        return False
    return _own_file(st) and (time.time() if now is None else now) - st.st_mtime <= max_age


def main(health_file: Path | None = HEALTH_FILE) -> None:
    """Run until SIGTERM or SIGINT (Compose's stop, Ctrl-C)."""
    handler = build_handler(Settings.from_env())
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping on signal %s", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    started = time.monotonic()
    try:
        serve(handler, stop, health_file)
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)
    log.info("socket mode stopped after %.0f s", time.monotonic() - started)
