"""The demo's stand-in for Sign in with Slack: an OpenID provider on loopback with a "who are you?" page.

`make demo KEEP=1` serves the console against it, so a newcomer can sign in as each demo person in turn and click
through the lifecycle. It is the real protocol, as Slack speaks it: discovery, an authorize endpoint (here a page
listing the catalogue's people instead of Slack's consent screen), a token endpoint checking the client's secret,
the one-time code and the redirect URI, and RS256 ID tokens whose keys the console fetches from the JWKS. It only
ever redirects to the console it was started for, and it listens on 127.0.0.1 only: it signs anyone in.
"""

from __future__ import annotations

import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

CODE_TTL = 60.0  # seconds a code may wait for the token call (Slack's are as short)


@dataclass
class DemoOidc:
    """Signs in whichever of `people` ({slack id: label}) the browser picks, for `team_id`."""

    people: dict[str, str]
    team_id: str
    redirect_uri: str  # the console's callback: the only place codes are sent
    client_id: str = field(default_factory=lambda: "demo." + secrets.token_hex(6))
    client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "demo-1", "use": "sig", "alg": "RS256"})
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-oidc", daemon=True)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DemoOidc:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/openid/connect/authorize",
                "token_endpoint": f"{base}/api/openid.connect.token", "jwks_uri": f"{base}/openid/connect/keys",
                "response_types_supported": ["code"], "scopes_supported": ["openid", "profile"],
                "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"]}

    def picker(self, query: dict[str, str]) -> tuple[int, str]:
        """The page that stands in for Slack's: one button per person, each carrying the console's request."""
        if query.get("client_id") != self.client_id or query.get("redirect_uri") != self.redirect_uri \
                or query.get("response_type") != "code":
            return 400, "<p>This sign-in did not come from the demo's console.</p>"
        keep = {k: query.get(k, "") for k in ("state", "nonce")}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">' for k, v in keep.items())
        buttons = "".join(
            f'<p><button name="user" value="{html.escape(uid)}">{html.escape(label)}</button></p>'
            for uid, label in self.people.items())
        return 200, ("<!doctype html><meta name=viewport content='width=device-width'><title>Demo sign-in</title>"
                     "<h1>Sign in to the Keyturn demo as…</h1><p>(In production this is Slack's own page.)</p>"
                     f'<form method="post" action="/openid/connect/authorize">{hidden}{buttons}</form>')

    def choose(self, form: dict[str, str]) -> tuple[int, dict[str, str]]:
        user = form.get("user", "")
        if user not in self.people:
            return 400, {}
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = {"user": user, "nonce": form.get("nonce") or None, "at": time.monotonic()}
        back = {"code": code, **({"state": form["state"]} if form.get("state") else {})}
        return 303, {"Location": f"{self.redirect_uri}?{urlencode(back)}"}

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.client_secret):
            return 401, {"ok": False, "error": "invalid_client"}
        with self._lock:
            grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or time.monotonic() - grant["at"] > CODE_TTL or form.get("redirect_uri") != self.redirect_uri:
            return 400, {"ok": False, "error": "invalid_code"}
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": grant["user"], "aud": self.client_id, "iat": now, "exp": now + 300,
                  "auth_time": now, "nonce": grant["nonce"], "https://slack.com/user_id": grant["user"],
                  "https://slack.com/team_id": self.team_id, "name": self.people[grant["user"]]}
        id_token = jwt.encode({"alg": "RS256", "kid": "demo-1", "typ": "JWT"}, claims, self.key)
        return 200, {"ok": True, "access_token": "xoxp-demo-" + secrets.token_hex(8), "token_type": "Bearer",
                     "id_token": id_token}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
                      ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                self._send(status, json.dumps(body).encode(), "application/json")

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._json(200, provider.metadata())
                elif parts.path == "/openid/connect/keys":
                    self._json(200, dict(KeySet([provider.key]).as_dict(private=False)))
                elif parts.path == "/openid/connect/authorize":
                    status, page = provider.picker(dict(parse_qsl(parts.query)))
                    self._send(status, page.encode(), "text/html; charset=utf-8")
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), 16_384)
                form = dict(parse_qsl(self.rfile.read(length).decode(errors="replace")))
                path = urlsplit(self.path).path
                if path == "/openid/connect/authorize":
                    status, headers = provider.choose(form)
                    self._send(status, b"", "text/plain", headers)
                elif path == "/api/openid.connect.token":
                    self._json(*provider.token(form))
                else:
                    self._json(404, {"error": "not_found"})

        return Handler
