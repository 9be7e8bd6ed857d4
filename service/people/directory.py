"""The two look-ups behind finding a person by email: Slack's profile email, then the Identity Store's users.

Each answers with a value, a `NotFound` (a definite "no one": remembered like any answer) or lets any other
error through (Slack down, AWS refusing: never remembered, and the caller refuses the person).
"""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.errors import SlackApiError

# Slack answers these for a user id that is not (or no longer) anyone it can describe: a definite no.
SLACK_NO_SUCH_USER = frozenset({"user_not_found", "user_not_visible", "users_not_found"})
EMAIL = re.compile(r"[\x21-\x3f\x41-\x7e]{1,64}@[A-Za-z0-9.-]{1,253}")  # ASCII, one @, no spaces


class NotFound(Exception):
    """A definite answer that nobody (or no single person) matches; the message says why."""


def slack_email(slack: Any, user_id: str, *, team_ids: tuple[str, ...] = ()) -> str:
    """The profile email of a live, human Slack user of the served workspace (raises NotFound otherwise)."""
    try:
        answer = slack.users_info(user=user_id)
    except SlackApiError as exc:
        if exc.response.get("error") in SLACK_NO_SUCH_USER:
            raise NotFound(f"Slack has no user {user_id}") from exc
        raise
    user = answer.get("user") or {}
    if user.get("id") != user_id:
        raise RuntimeError(f"Slack answered users.info for {user_id} with another user")
    if user.get("deleted"):
        raise NotFound("the Slack user is deactivated")
    if user.get("is_bot") or user.get("is_app_user") or user_id == "USLACKBOT":
        raise NotFound("the Slack user is a bot or an app")
    if team_ids and user.get("team_id") not in team_ids:
        raise NotFound(f"the Slack user belongs to team {user.get('team_id')!r}, not the one Keyturn serves")
    email = (user.get("profile") or {}).get("email")
    if not email:
        # Without users:read.email Slack leaves the field out: say so, the setting cannot work without it.
        raise NotFound("the Slack profile has no email (does the app have the users:read.email scope?)")
    if not isinstance(email, str) or not EMAIL.fullmatch(email):
        raise NotFound("the Slack profile email is not a plain ASCII address")
    return email


def store_user_names(store: Any, identity_store_id: str, email: str) -> list[str]:
    """UserNames of every Identity Store user with `email` among their emails (case-insensitive)."""
    wanted = email.lower()
    names: list[str] = []
    for page in store.get_paginator("list_users").paginate(IdentityStoreId=identity_store_id):
        for user in page.get("Users", []):
            values = [e.get("Value") for e in user.get("Emails") or [] if isinstance(e, dict)]
            if any(isinstance(v, str) and v.lower() == wanted for v in values):
                names.append(str(user["UserName"]))
    return names
