"""Seals on queued tasks: an HMAC with a key the broker never holds, so whoever can write to Redis cannot
queue work that acts as someone. Pure (stdlib only).

The seal covers the task's name, its arguments, the time it was sealed and a random nonce; the worker refuses
a message without one, with a wrong one (altered, or signed with another key), sealed too long ago or in the
future. Within that age a copy of a message can be queued again: the worker records each nonce it finished
(service/slack/interactions.py) and refuses it afterwards, and the use cases are idempotent besides.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

VERSION = 1
CLOCK_SKEW = 60  # seconds a seal may seem to come from the future (web and worker clocks)


def _mac(key: str, name: str, args: list[Any], at: int, nonce: str) -> str:
    text = json.dumps({"v": VERSION, "task": name, "args": args, "at": at, "nonce": nonce},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


def seal(key: str, name: str, args: list[Any], *, at: int, nonce: str | None = None) -> dict[str, Any]:
    """The seal of task `name` with `args`, sealed at `at` (Unix seconds, UTC)."""
    if not key:
        raise ValueError("no task signing key")
    nonce = nonce or secrets.token_hex(16)
    return {"v": VERSION, "at": at, "nonce": nonce, "mac": _mac(key, name, args, at, nonce)}


def seal_refusal(key: str, name: str, args: list[Any], sealed: object, *, now: int, max_age: int) -> str | None:
    """Why the message must not run (a short reason for the log), or None when the seal holds."""
    if not key:
        return "this worker has no task signing key"
    if not isinstance(sealed, dict):
        return "unsigned"
    at, nonce, mac = sealed.get("at"), sealed.get("nonce"), sealed.get("mac")
    if sealed.get("v") != VERSION or not isinstance(at, int) or isinstance(at, bool) \
            or not isinstance(nonce, str) or not isinstance(mac, str):
        return "malformed seal"
    if not hmac.compare_digest(mac, _mac(key, name, args, at, nonce)):
        return "bad signature (altered, or signed with another key)"
    if at > now + CLOCK_SKEW:
        return "sealed in the future"
    if now - at > max_age:
        return f"sealed {now - at}s ago, more than {max_age}s"
    return None
