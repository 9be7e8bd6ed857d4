"""The Bolt app: signature verification, the identity middleware, the error handler, the listeners."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.request.internals import extract_enterprise_id, extract_team_id, extract_user_id
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from service.core.rules import MESSAGES, Reason
from service.core.slack_trust import Workspace
from service.operations.context import Context
from service.settings import Settings, SettingsError
from service.slack.interactions import unexpected, user_message
from service.slack.listeners import approvals, command, home, requester

log = logging.getLogger(__name__)


BOLT_OAUTH_ENV = ("SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")


@contextmanager
def _without_bolt_oauth_env() -> Iterator[None]:
    """Hide SLACK_CLIENT_ID / SLACK_CLIENT_SECRET from Bolt while it is built.

    Bolt turns on its own OAuth flow when both are in the environment, even empty (.env.example has them, for
    the console's Sign in with Slack): a file-based installation store authorizes every request, finds no
    installation and Bolt answers every command and click with an error. Keyturn serves one workspace with
    its bot token; those two variables are the console's."""
    saved = {name: os.environ.pop(name) for name in BOLT_OAUTH_ENV if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def build_bolt_app(settings: Settings, ctx: Context, client: WebClient, workspace: Workspace | None = None) -> App:
    """`workspace`: the one served (default: from the settings, else what Slack's auth.test reports now)."""
    served = workspace or workspace_of(settings, client)
    # Listeners run on the request's own thread and the answer goes out when they return: no hand-off to
    # Bolt's small listener pool and its 10 ms polling for ack() (bench/RESULTS.md). So a listener does only
    # quick local work before it returns; slow work is queued for workers (interactions.queue) and Slack
    # calls that must not delay the acknowledgement go through context["after_ack"].
    with _without_bolt_oauth_env():
        app = App(
            # Without a name Bolt reads it off inspect.stack(): a tenth of a second at every start. Bolt sets its
            # logger's level on every request, so the name must not be ours ("keyturn" is the audit's parent).
            name="keyturn-slack",
            signing_secret=settings.slack_signing_secret or "unset-refuses-every-request",
            client=client,
            token_verification_enabled=False,
            request_verification_enabled=True,
            process_before_response=True,
        )
    after_ack_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="slack-after-ack")

    @app.middleware
    def one_workspace(body: dict[str, Any], respond: Any, next: Any) -> Any:
        """Every command, click, form and event, before anything else: from the served workspace, or refused
        with nothing done (the one place the workspace is checked; the use cases trust it)."""
        user = body.get("user")
        refusal = served.refusal(team_id=extract_team_id(body), enterprise_id=extract_enterprise_id(body),
                                 actor_team_id=user.get("team_id") if isinstance(user, dict) else None,
                                 app_id=body.get("api_app_id"))
        if refusal is None:
            return next()
        log.warning("refused a Slack request from outside the served workspace: %s", refusal,
                    extra={"user": extract_user_id(body), "type": body.get("type") or body.get("command")})
        message = MESSAGES[Reason.WRONG_TEAM]
        if body.get("command"):
            return BoltResponse(status=200, body=json.dumps({"response_type": "ephemeral", "text": message}),
                                headers={"content-type": ["application/json"]})
        if body.get("response_url"):
            after_ack_pool.submit(_quietly, respond, text=message, response_type="ephemeral", replace_original=False)
        return BoltResponse(status=200, body="")

    @app.middleware
    def identity(body: dict[str, Any], context: Any, respond: Any, client: Any, next: Any) -> Any:
        """Who acts comes only from the signed payload: user id and team id."""
        user = body.get("user") or {}
        context["keyturn"] = ctx
        context["after_ack"] = partial(after_ack, after_ack_pool, body, respond, client)
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
        message = user_message(error) or unexpected(error, "slack listener")
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


def workspace_of(settings: Settings, client: WebClient) -> Workspace:
    """The configured workspace, or the bot token's own (auth.test); refuses to start when neither is known."""
    if settings.slack_team_ids or settings.slack_enterprise_id:
        return Workspace(frozenset(settings.slack_team_ids), settings.slack_enterprise_id, settings.slack_app_id)
    try:
        auth = client.auth_test()
    except Exception as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        raise SettingsError(f"Slack's auth.test failed ({error}), so the served workspace is unknown: check "
                            "SLACK_BOT_TOKEN and SLACK_API_URL, or set KEYTURN_SLACK_TEAM_ID") from exc
    team, enterprise = auth.get("team_id") or "", auth.get("enterprise_id") or ""
    log.info("serving the Slack workspace auth.test reports", extra={"team": team, "enterprise": enterprise})
    return Workspace(frozenset({team} - {""}), enterprise, settings.slack_app_id)


def _quietly(call: Callable[..., Any], **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except Exception:
        log.warning("could not answer a refused Slack request", exc_info=True)


def after_ack(pool: ThreadPoolExecutor, body: dict[str, Any], respond: Any, client: Any,
              call: Callable[..., Any], **kwargs: Any) -> None:
    """Run a Slack call beside the acknowledgement rather than before it (views.open, a reply): the listener
    returns, and Slack gets its answer, without waiting on Slack's API. A failure is told and logged."""

    def run() -> None:
        try:
            call(**kwargs)
        except Exception as exc:
            tell_user(body, user_message(exc) or unexpected(exc, "slack call after ack"), respond, client)

    pool.submit(run)


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
