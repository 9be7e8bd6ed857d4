"""Bolt listeners, one module per surface: the command, approvals, the requester's buttons, App Home."""

from __future__ import annotations

from typing import Any


def submission_token(view: dict[str, Any], user: str) -> str:
    """The client token of a form's submission: Slack's view id (one per opened modal, kept across
    views.update) with the submitter. A replayed or redelivered submission finds the request it filed; a
    form sent back with errors filed nothing, so submitting it again after a fix files once."""
    return f"view:{user}:{view['id']}"[:128]
