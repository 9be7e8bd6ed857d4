"""The web console's tests: the real app (create_app) with the console on, signing in through a fake OpenID
provider on loopback that signs real RS256 ID tokens (tests/support/oidc_fake.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from tests.api import CATALOG
from tests.support.oidc_fake import CLIENT_ID, CLIENT_SECRET, TEAM_ID, FakeOidc, SignIn

CONSOLE_URL = "https://keyturn.test"
SESSION_SECRET = "console-session-key-0123456789abcdefghijklmn"


@dataclass
class ConsoleWorld:
    app: Any
    runtime: Any
    dispatch: Any
    oidc: FakeOidc

    def client(self) -> Any:
        return self.app.test_client()

    def close(self) -> None:
        self.runtime.engine.dispose()


def console_settings(db_url: str, catalog: Path, oidc: FakeOidc, **changes: Any) -> Any:
    from service.settings import Settings

    return Settings(database_url=db_url, catalog_path=catalog, console_url=CONSOLE_URL, oidc_issuer=oidc.issuer,
                    oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET, console_session_secret=SESSION_SECRET,
                    slack_team_ids=(TEAM_ID,)).with_(**changes)


def make_console(db_url: str, tmp_path: Path, oidc: FakeOidc, *, catalog_text: str = CATALOG,
                 **changes: Any) -> ConsoleWorld:
    """create_app on a migrated database with the console on and a RecordingDispatcher instead of Celery."""
    from service.app import create_app
    from service.operations.context import RecordingDispatcher
    from service.runtime import build_runtime
    from service.store.db import migrate

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(catalog_text)
    migrate(db_url)
    settings = console_settings(db_url, catalog, oidc, **changes)
    dispatch = RecordingDispatcher()
    runtime = build_runtime(settings, dispatch=dispatch)
    return ConsoleWorld(create_app(settings, runtime=runtime), runtime, dispatch, oidc)


@contextmanager
def served_on_loopback(make: Callable[[str], ConsoleWorld]) -> Iterator[tuple[str, ConsoleWorld]]:
    """The world `make(base)` builds, served by werkzeug on a free loopback port at `base` (http://localhost:…,
    where a browser keeps Secure cookies and allows WebAuthn)."""
    from werkzeug.serving import make_server

    from tests.support.ports import free_port

    port = free_port()
    base = f"http://localhost:{port}"
    world = make(base)
    server = make_server("127.0.0.1", port, world.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield base, world
    finally:
        server.shutdown()
        world.close()


def start_sign_in(client: Any) -> str:
    """GET /console/login: the provider's authorize URL (with state and nonce) the browser is sent to."""
    resp = client.get("/console/login")
    assert resp.status_code == 302, resp.data
    return str(resp.headers["Location"])


def provider_answer(authorize_url: str) -> str:
    """What the provider sends the browser back to: the path and query of the callback (code, state)."""
    resp = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    back = urlsplit(resp.headers["Location"])
    assert f"{back.scheme}://{back.netloc}" == CONSOLE_URL
    return f"{back.path}?{back.query}"


def sign_in(client: Any, oidc: FakeOidc, user: str, *, team: str = TEAM_ID, tamper: str | None = None) -> Any:
    """The whole code flow as a browser makes it; the callback's response."""
    oidc.next_user, oidc.tamper = SignIn(user_id=user, team_id=team), tamper
    return client.get(provider_answer(start_sign_in(client)))


def csrf_of(client: Any) -> str:
    """The CSRF token of the signed-in session, read off a page's form as a browser would."""
    import re

    page = client.get("/console/").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)
