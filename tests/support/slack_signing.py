"""Requests as Slack sends them: real payload shapes, signed with the v0 scheme.

Bodies are returned as the exact `str` that is signed and sent; never re-encode them after signing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import quote, urlencode

import requests

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
DEFAULT_SECRET = "8f14e45fceea167a5a36dedd4bea2543"  # Slack's shape: 32 hex characters
TASK_SIGNING_KEY = "tests-task-key-9c1185a5c5e9fc54612808977ee8f548"  # KEYTURN_TASK_SIGNING_KEY
TEAM_ID = "T0TEAM001"
TEAM_DOMAIN = "keyturn-test"
APP_ID = "A0KEYTURN"
VERIFICATION_TOKEN = "legacy-verification-token"  # deprecated by Slack, still sent; never trusted


def sign(secret: str, timestamp: int | str, body: str | bytes) -> str:
    text = body.decode() if isinstance(body, bytes) else body
    base = f"v0:{timestamp}:{text}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    body: str | bytes,
    secret: str = DEFAULT_SECRET,
    timestamp: int | str | None = None,
    content_type: str = FORM,
) -> dict[str, str]:
    ts = str(int(time.time())) if timestamp is None else str(timestamp)
    return {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(secret, ts, body),
    }


def _trigger_id() -> str:
    return f"{int(time.time())}.{time.time_ns() % 10**12}.{hashlib.md5(str(time.time_ns()).encode()).hexdigest()}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _user(user_id: str, team_id: str, user_name: str | None) -> dict[str, Any]:
    name = user_name or f"user-{user_id.lower()}"
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def slash_command_body(
    command: str = "/access",
    text: str = "",
    user_id: str = "U0REQUEST1",
    team_id: str = TEAM_ID,
    user_name: str | None = None,
    channel_id: str = "C0GENERAL1",
    channel_name: str = "general",
    trigger_id: str | None = None,
    response_url: str = "https://hooks.slack.com/commands/T0TEAM001/1/x",
) -> str:
    """A slash command, form-encoded exactly like Slack posts it."""
    return urlencode(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "team_domain": TEAM_DOMAIN,
            "channel_id": channel_id,
            "channel_name": channel_name,
            "user_id": user_id,
            "user_name": user_name or f"user-{user_id.lower()}",
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id or _trigger_id(),
        }
    )


def payload_body(payload: dict[str, Any]) -> str:
    """Interactivity bodies are form-encoded with a single `payload=<json>` field."""
    return "payload=" + quote(json.dumps(payload, separators=(",", ":")))


def block_actions_payload(
    user_id: str,
    team_id: str = TEAM_ID,
    action_id: str = "approve",
    value: str = "",
    block_id: str | None = None,
    message_ts: str | None = None,
    channel_id: str | None = None,
    trigger_id: str | None = None,
    container: dict[str, Any] | None = None,
    user_name: str | None = None,
    response_url: str = "https://hooks.slack.com/actions/T0TEAM001/1/x",
    button_text: str = "Button",
    message: dict[str, Any] | None = None,
    view: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A button click (block_actions) as a dict; see `block_actions_body` for the wire form."""
    ts = message_ts or f"{int(time.time())}.000100"
    if container is None:
        if view is not None:
            container = {"type": "view", "view_id": view.get("id", "V0VIEW0001")}
        else:
            container = {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel_id or "C0GENERAL1",
                "is_ephemeral": False,
            }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id, team_id, user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": container,
        "trigger_id": trigger_id or _trigger_id(),
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id or "actions",
                "text": {"type": "plain_text", "text": button_text, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": _action_ts(),
            }
        ],
    }
    if view is not None:
        payload["view"] = view
    else:
        cid = container.get("channel_id") or channel_id or "C0GENERAL1"
        payload["channel"] = {"id": cid, "name": "general" if cid.startswith("C") else "directmessage"}
        payload["message"] = message or {
            "type": "message",
            "user": "U0BOT0001",
            "bot_id": "B0BOT0001",
            "ts": ts,
            "text": "",
            "team": team_id,
            "blocks": [],
        }
        payload["response_url"] = response_url
    return payload


def block_actions_body(
    user_id: str, team_id: str = TEAM_ID, action_id: str = "approve", value: str = "", **kwargs: Any
) -> str:
    """A button click, form-encoded `payload=<json>` like Slack's interactivity requests.

    Keyword arguments are those of `block_actions_payload` (block_id, message_ts, channel_id, ...).
    """
    return payload_body(block_actions_payload(user_id, team_id, action_id, value, **kwargs))


def _state(state_values: dict[str, Any]) -> dict[str, Any]:
    """{block: {action: "text"}} shorthand becomes a plain_text_input value; dict leaves pass as-is."""
    return {
        block: {
            action: leaf if isinstance(leaf, dict) else {"type": "plain_text_input", "value": leaf}
            for action, leaf in actions.items()
        }
        for block, actions in state_values.items()
    }


def view_submission_payload(
    user_id: str,
    team_id: str = TEAM_ID,
    callback_id: str = "request",
    state_values: dict[str, Any] | None = None,
    private_metadata: str = "",
    view_id: str = "V0VIEW0001",
    user_name: str | None = None,
    blocks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": team_id, "domain": TEAM_DOMAIN},
        "user": _user(user_id, team_id, user_name),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": _state(state_values or {})},
            "hash": f"{int(time.time())}.abcdEFGH",
            "title": {"type": "plain_text", "text": "Keyturn"},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel"},
            "submit": {"type": "plain_text", "text": "Submit"},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": "B0BOT0001",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def view_submission_body(
    user_id: str,
    team_id: str = TEAM_ID,
    callback_id: str = "request",
    state_values: dict[str, Any] | None = None,
    private_metadata: str = "",
    **kwargs: Any,
) -> str:
    """A modal submission, form-encoded `payload=<json>`; kwargs as for `view_submission_payload`."""
    payload = view_submission_payload(user_id, team_id, callback_id, state_values, private_metadata, **kwargs)
    return payload_body(payload)


def event_callback_body(event: dict[str, Any], team_id: str = TEAM_ID) -> str:
    """An Events API delivery (JSON), e.g. event={"type": "app_home_opened", "user": "U1", "tab": "home"}."""
    return json.dumps(
        {
            "token": VERIFICATION_TOKEN,
            "team_id": team_id,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": team_id, "user_id": "U0BOT0001", "is_bot": True}],
        }
    )


def post_signed(
    url: str,
    body: str,
    content_type: str = FORM,
    secret: str = DEFAULT_SECRET,
    timestamp: int | str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> requests.Response:
    """POST `body` to `url` signed as Slack would (timestamp defaults to now)."""
    all_headers = signed_headers(body, secret, timestamp, content_type)
    all_headers.update(headers or {})
    return requests.post(url, data=body.encode(), headers=all_headers, timeout=timeout)
