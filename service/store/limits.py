"""How long each piece of user text may be: the forms (max_length), the REST schemas and the database
(column sizes and CHECK constraints, migration 0005) use these same numbers."""

from __future__ import annotations

from service.core.durations import MAX_TEXT as DURATION_MAX

REASON_MAX = 2000  # requests.reason
NOTE_MAX = 2000  # requests.decision_note, approvals.note
TICKET_MAX = 256  # requests.ticket

# Control characters other than tab and line breaks: PostgreSQL refuses NUL in text.
_CONTROL = frozenset(chr(c) for c in [*range(0, 9), 11, 12, *range(14, 32), 127])

__all__ = ["DURATION_MAX", "NOTE_MAX", "REASON_MAX", "TICKET_MAX", "text_problem"]


def text_problem(value: str | None, max_len: int, *, one_line: bool = False) -> str | None:
    """Why this text cannot be stored, fit to show next to the field; None when it can."""
    if value is None:
        return None
    if len(value) > max_len:
        return f"At most {max_len} characters, please (this is {len(value)})."
    if any(ch in _CONTROL or (one_line and ch in "\r\n") for ch in value):
        return "Remove the control characters" + (" and line breaks." if one_line else ".")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        return "Remove the characters that are not valid Unicode."
    return None
