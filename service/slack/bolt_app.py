"""The Bolt app: signature verification, the identity middleware, the error handler, the listeners."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from service.core.durations import DurationError
from service.operations.context import Context, NotFound, Refused
from service.settings import Settings
from service.slack.listeners import approvals, command, home, requester

log = logging.getLogger(__name__)


def make_web_client(settings: Settings) -> WebClient:
    """The one Slack Web API client; honours 429 Retry-After a few times before giving up."""
    token = settings.slack_bot_token or "xoxb-not-configured"
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=10)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=3))
    return client


def user_message(error: BaseException) -> str | None:
    """What to tell the user about a domain error; None for an unexpected one."""
    if isinstance(error, Refused | NotFound | DurationError):
        return str(error)
    return None


def build_bolt_app(settings: Settings, ctx: Context, client: WebClient) -> App:
    app = App(
        signing_secret=settings.slack_signing_secret or "unset-refuses-every-request",
        client=client,
        token_verification_enabled=False,
        request_verification_enabled=True,
    )

    @app.middleware
    def identity(body: dict[str, Any], context: Any, next: Any) -> Any:
        """Who acts comes only from the signed payload: user id and team id."""
        user = body.get("user") or {}
        context["keyturn"] = ctx
        context["actor_id"] = user.get("id") if isinstance(user, dict) else body.get("user_id")
        context["actor_id"] = context["actor_id"] or body.get("user_id") or (body.get("event") or {}).get("user")
        team = body.get("team")
        context["team_id"] = (team.get("id") if isinstance(team, dict) else None) or body.get("team_id") \
            or (user.get("team_id") if isinstance(user, dict) else None)
        return next()

    @app.error
    def handle_errors(
        error: BaseException, body: dict[str, Any], response: BoltResponse | None, respond: Any, client: Any
    ) -> BoltResponse | None:
        """Domain errors become an ephemeral message; unknown ones are logged with an id to quote."""
        message = user_message(error)
        if message is None:
            error_id = uuid.uuid4().hex[:8]
            log.error("slack listener failed (error id %s)", error_id, exc_info=error)
            message = f"Something went wrong (error id `{error_id}`). Keyturn's operators can look it up."
        if response is not None and body.get("command"):
            # Not acknowledged yet: the ephemeral answer rides on the acknowledgement itself.
            return BoltResponse(status=200, body=json.dumps({"response_type": "ephemeral", "text": message}),
                                headers={"content-type": ["application/json"]})
        tell_user(body, message, respond, client)
        return BoltResponse(status=200, body="") if response is not None else None

    command.register(app)
    approvals.register(app)
    requester.register(app)
    home.register(app)
    return app


def tell_user(body: dict[str, Any], message: str, respond: Any, client: Any) -> None:
    """An ephemeral reply where Slack gives us a response URL, else a DM (App Home has none)."""
    try:
        if body.get("response_url") or body.get("response_urls"):
            respond(text=message, response_type="ephemeral", replace_original=False)
        else:
            user = (body.get("user") or {}).get("id") or body.get("user_id")
            if user:
                client.chat_postMessage(channel=user, text=message)
    except Exception:
        log.warning("could not tell the user about an error", exc_info=True)
