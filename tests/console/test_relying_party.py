"""The WebAuthn relying party from KEYTURN_CONSOLE_URL: its origin is the one the browser reports (lower-case host,
no default port), so a URL written with capitals or :443 does not make every security-key ceremony fail."""

from __future__ import annotations

import pytest

from service.console.webauthn_rp import RelyingParty


@pytest.mark.parametrize(("url", "rp_id", "origin"), [
    ("https://keyturn.example.com", "keyturn.example.com", "https://keyturn.example.com"),
    ("https://Keyturn.Example.COM", "keyturn.example.com", "https://keyturn.example.com"),
    ("https://keyturn.example.com:443", "keyturn.example.com", "https://keyturn.example.com"),
    ("https://keyturn.example.com:8443", "keyturn.example.com", "https://keyturn.example.com:8443"),
    ("http://127.0.0.1:8765", "127.0.0.1", "http://127.0.0.1:8765"),
    ("http://localhost:80", "localhost", "http://localhost"),
])
def test_origin_is_what_the_browser_reports(url: str, rp_id: str, origin: str) -> None:
    rp = RelyingParty.of(url)
    assert (rp.rp_id, rp.origin) == (rp_id, origin)


def test_a_url_without_a_host_is_refused() -> None:
    with pytest.raises(ValueError, match="names no host"):
        RelyingParty.of("https://")
