"""A fake OpenID provider on loopback that behaves like Sign in with Slack and signs real RS256 ID tokens.

It serves the discovery document, an authorize endpoint that signs in `fake.next_user` at once (no page) and
redirects back with a code, a token endpoint that checks the client's credentials, the code and the
redirect_uri, and a JWKS. `fake.tamper` makes the next ID token wrong in one way: "signature" (a byte of the
signature changed), "foreign_key" (signed by a key not in the JWKS, same kid), "nonce", "team", "issuer",
"audience", "expired", "none_alg" (unsigned), "no_id_token".
"""

from __future__ import annotations

import base64
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

TEAM_ID = "T0TEAM001"
CLIENT_ID = "1234567890.0987654321"
CLIENT_SECRET = "0123456789abcdef0123456789abcdef"


@dataclass
class SignIn:
    user_id: str
    team_id: str = TEAM_ID
    enterprise_id: str | None = None
    name: str = ""


@dataclass
class FakeOidc:
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    next_user: SignIn | None = None
    tamper: str | None = None
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_calls: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "use": "sig", "alg": "RS256"})
        self.foreign = RSAKey.generate_key(2048, parameters={"kid": "fake-1", "use": "sig", "alg": "RS256"})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-fake", daemon=True)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeOidc:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        self.next_user, self.tamper = None, None
        self.codes.clear()
        self.token_calls.clear()

    # ---- what the endpoints answer ---------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        base = self.issuer
        return {"issuer": base, "authorization_endpoint": f"{base}/openid/connect/authorize",
                "token_endpoint": f"{base}/api/openid.connect.token", "jwks_uri": f"{base}/openid/connect/keys",
                "response_types_supported": ["code"], "scopes_supported": ["openid", "profile", "email"],
                "id_token_signing_alg_values_supported": ["RS256"], "subject_types_supported": ["public"],
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"]}

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str]]:
        """Sign in next_user and send the browser back with a code (400 for a wrong client or no user)."""
        if query.get("client_id") != self.client_id or query.get("response_type") != "code" \
                or "openid" not in query.get("scope", "").split() or self.next_user is None:
            return 400, {}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"user": self.next_user, "nonce": query.get("nonce"),
                            "redirect_uri": query.get("redirect_uri", "")}
        back = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return 302, {"Location": f"{query.get('redirect_uri', '')}?{urlencode(back)}"}

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        self.token_calls.append(form)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            return 401, {"ok": False, "error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)  # a code is good once
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"ok": False, "error": "invalid_code"}
        answer: dict[str, Any] = {"ok": True, "access_token": "xoxp-" + secrets.token_hex(8), "token_type": "Bearer"}
        if self.tamper != "no_id_token":
            answer["id_token"] = self.id_token(grant["user"], grant["nonce"])
        return 200, answer

    def id_token(self, who: SignIn, nonce: str | None) -> str:
        now = int(time.time())
        tamper = self.tamper
        claims: dict[str, Any] = {
            "iss": "https://evil.example" if tamper == "issuer" else self.issuer,
            "sub": who.user_id, "aud": "someone-else" if tamper == "audience" else self.client_id,
            "exp": now - 3600 if tamper == "expired" else now + 300, "iat": now - 7200 if tamper == "expired" else now,
            "auth_time": now, "nonce": "not-the-nonce" if tamper == "nonce" else nonce,
            "https://slack.com/user_id": who.user_id,
            "https://slack.com/team_id": "T0OTHER01" if tamper == "team" else who.team_id,
            "name": who.name or who.user_id,
        }
        if who.enterprise_id:
            claims["https://slack.com/enterprise_id"] = who.enterprise_id
        header = {"alg": "RS256", "kid": "fake-1", "typ": "JWT"}
        if tamper == "none_alg":
            segments = [json.dumps(header | {"alg": "none"}), json.dumps(claims)]
            return ".".join(base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode() for s in segments) + "."
        token = jwt.encode(header, claims, self.foreign if tamper == "foreign_key" else self.key)
        if tamper == "signature":
            head, body, sig = token.split(".")
            flipped = ("A" if sig[5] != "A" else "B")
            token = f"{head}.{body}.{sig[:5]}{flipped}{sig[6:]}"
        return token

    def jwks(self) -> dict[str, Any]:
        return KeySet([self.key]).as_dict(private=False)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
                      ) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self._send(200, fake.metadata())
                elif parts.path == "/openid/connect/keys":
                    self._send(200, fake.jwks())
                elif parts.path == "/openid/connect/authorize":
                    status, headers = fake.authorize(dict(parse_qsl(parts.query)))
                    self._send(status, None if status == 302 else {"error": "bad_request"}, headers)
                else:
                    self._send(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                if urlsplit(self.path).path == "/api/openid.connect.token":
                    self._send(*fake.token(form, self.headers.get("Authorization", "")))
                else:
                    self._send(404, {"error": "not_found"})

        return Handler
