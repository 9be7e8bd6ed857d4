"""An unsigned flood is refused before anything reads it: a body announced at 64 MiB gets 413 at once from
its Content-Length (the server never waits for, let alone buffers, the rest); one without a length (chunked)
gets 411 unread."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from service.api.limits import MAX_BODY
from tests.slack.conftest import SlackWorld

HUGE = 64 * 1024 * 1024


def _raw(url: str, head: str, body: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def test_a_64_mib_unsigned_body_is_refused_without_being_read(lite: SlackWorld) -> None:
    head = (f"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {HUGE}\r\n\r\n")
    # Only 1 KiB of the announced 64 MiB is ever sent: an answer proves nothing waited for the rest.
    answer, took = _raw(lite.url, head, b"a" * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert took < 2.0


def test_a_chunked_body_is_refused_unread(lite: SlackWorld) -> None:
    chunk = b"a" * (MAX_BODY + 1)
    body = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n"
    head = ("POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    answer, took = _raw(lite.url, head, body[:1024])  # never finished: nothing waits for it
    assert answer.startswith(b"HTTP/1.1 411"), answer[:200]
    assert took < 2.0


def test_a_body_within_the_cap_still_reaches_the_signature_check(lite: SlackWorld) -> None:
    resp = lite.post("text=" + "a" * 10_000, headers={"X-Slack-Signature": "v0=forged"})
    assert resp.status_code == 401  # read, then refused for its signature as before
