"""Durations as people write them: `30m`, `2h`, `1d`, `1h30m`."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*(?:\d+\s*[smhdw]\s*)+$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# Far beyond any role's maximum (a role's own max_duration is the real bound), and inside what the
# databases' INTEGER seconds (2**31 - 1, about 24,855 days) and a timedelta hold.
MAX_DURATION = timedelta(days=20000)
MAX_TEXT = 32  # characters: "1w 2d 3h 4m 5s" is 14; longer text is never a duration someone typed


class DurationError(ValueError):
    """A duration that cannot be read."""


class DurationTooLong(DurationError):
    """A well-formed duration beyond MAX_DURATION (e.g. `99999999999d`)."""


def parse_duration(text: str) -> timedelta:
    """Read `30m`, `2h`, `1d`, `1h30m` (units s, m, h, d, w) into a positive timedelta."""
    if not isinstance(text, str) or len(text) > MAX_TEXT or not _WHOLE.match(text):
        shown = text if not isinstance(text, str) or len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"
        raise DurationError(f"{shown!r} is not a duration; write it like 30m, 2h or 1d")
    seconds = sum(int(n) * _UNIT_SECONDS[u.lower()] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise DurationError(f"{text!r} must be longer than zero")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLong(f"{text!r} is longer than Keyturn ever grants (at most {format_duration(MAX_DURATION)})")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration: 2h, 1d2h, 45m, 90s -> 1m30s."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)
