"""`make demo KEEP=1`: after the timeline, the web console on loopback, signed in through the demo's provider.

The worker, beat, Redis and moto server of the demo keep running behind it, so what a newcomer does in the console
(request as alice, approve as bob, I'm done, the audit as admin) really lands in (moto's) IAM. Runs until Ctrl-C.
"""

from __future__ import annotations

import secrets
import signal
import threading
from dataclasses import replace
from types import FrameType
from typing import Any

from service.catalog import Catalog
from service.demo.local import free_port
from service.demo.oidc import DemoOidc
from service.settings import Settings

TEAM_ID = "T0DEMO001"
PREFERRED_PORT = 8765


def people(catalog: Catalog) -> dict[str, str]:
    """Everyone the console would let in, each with what they can do in the demo."""
    approves: dict[str, list[str]] = {}
    for role in catalog.roles.values():
        for approver in role.approvers:
            approves.setdefault(approver, []).append(role.id)
    admins = set(catalog.admins)
    out: dict[str, str] = {}
    for slack_id in sorted(set(catalog.identities) | set(approves) | admins):
        identity = catalog.identities.get(slack_id)
        parts = [identity.label if identity else slack_id]
        if slack_id in approves:
            parts.append("approves " + ", ".join(sorted(approves[slack_id])))
        if slack_id in admins:
            parts.append("admin")
        out[slack_id] = f"{slack_id}: " + "; ".join(parts)
    return out


def _port() -> int:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", PREFERRED_PORT))
        except OSError:
            return free_port()
    return PREFERRED_PORT


def serve_console(catalog: Catalog, say: Any, stop: threading.Event | None = None) -> None:
    """Serve the console until SIGINT/SIGTERM (or `stop`), printing where to click."""
    from werkzeug.serving import make_server

    from service.app import create_app

    port = _port()
    base = f"http://127.0.0.1:{port}"
    provider = DemoOidc(people(catalog), TEAM_ID, redirect_uri=f"{base}/console/callback").start()
    settings = replace(Settings.from_env(), log_level="WARNING", console_url=base, oidc_issuer=provider.issuer,
                       oidc_client_id=provider.client_id, oidc_client_secret=provider.client_secret,
                       console_session_secret=secrets.token_urlsafe(32), slack_team_ids=(TEAM_ID,))
    server = make_server("127.0.0.1", port, create_app(settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="demo-console", daemon=True)
    thread.start()
    stop = stop or threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    say(f"console: {base}/console/  (sign in as any demo person: alice asks, bob approves, admin sees the audit)")
    say("the worker and beat keep running behind it; Ctrl-C to stop")
    try:
        stop.wait()
    finally:
        server.shutdown()
        provider.stop()
        say("console stopped")
