"""The requester's buttons: "I'm done", "Extend", and "Request again" from App Home."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import App

from service.core.durations import DurationError, parse_duration
from service.core.rules import Reason, may_extend
from service.core.states import GrantState
from service.operations.context import Context, Refused
from service.operations.request_access import request_access
from service.operations.revoke_grant import revoke_grant
from service.slack import views
from service.slack.listeners import submission_token
from service.slack.listeners.command import duration_problem
from service.store.limits import REASON_MAX, text_problem
from service.store.models import Grant


def register(app: App) -> None:
    app.action("revoke_grant")(done_clicked)
    app.action("extend_grant")(extend_clicked)
    app.view("extend_grant")(extend_submitted)
    app.action("request_again")(request_again_clicked)


def done_clicked(ack: Any, body: dict[str, Any], context: Any, respond: Any) -> None:
    """"I'm done": end the access now; the DM confirms once IAM no longer has it."""
    revoke_grant(context["keyturn"], grant_id=int(body["actions"][0]["value"]), actor_id=context["actor_id"])
    ack()
    if body.get("response_url"):
        context["after_ack"](respond, text="Removing your access now; I'll confirm when it is gone.",
                             response_type="ephemeral", replace_original=False)


def extend_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Extend: a new approval for more time, within the role's maximum; only the requester may ask."""
    ctx: Context = context["keyturn"]
    grant_id = int(body["actions"][0]["value"])
    with ctx.store() as session:
        grant = session.get(Grant, grant_id)
        verdict = may_extend(GrantState(grant.state), grant.requester, ctx.actor(context["actor_id"])) \
            if grant else Reason.NOT_REVOCABLE
    if verdict is not Reason.OK:
        raise Refused(verdict)  # before ack(): the central error handler acknowledges and says why
    ack()
    context["after_ack"](client.views_open, trigger_id=body["trigger_id"], view=views.reason_modal(
        "extend_grant", "Extend access", "Why do you need more time?", {"grant_id": grant_id}, duration=True))


def extend_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """File the extension; when approved the expiry moves and access never blinks."""
    ctx: Context = context["keyturn"]
    values = view["state"]["values"]
    raw = ((values.get("duration") or {}).get("duration") or {}).get("value") or ""
    reason = ((values.get("reason") or {}).get("reason") or {}).get("value")
    grant_id = int(json.loads(view["private_metadata"])["grant_id"])
    with ctx.store() as session:
        grant = session.get(Grant, grant_id)
        role_id = grant.role_id if grant else ""
    problems = {"reason": problem} if (problem := text_problem(reason, REASON_MAX)) else {}
    try:
        duration = parse_duration(raw)
    except DurationError as exc:
        problems["duration"] = duration_problem(exc, ctx.catalog.role(role_id))
    if problems:
        ack(response_action="errors", errors=problems)
        return
    try:
        request_access(ctx, requester=context["actor_id"], role_id=role_id, duration=duration, reason=reason,
                       team_id=context["team_id"], extends_grant_id=grant_id,
                       client_token=submission_token(view, context["actor_id"]))
    except Refused as exc:
        field = "duration" if exc.reason in (Reason.DURATION_TOO_LONG, Reason.DURATION_NOT_POSITIVE) else "reason"
        ack(response_action="errors", errors={field: str(exc)})
        return
    ack()


def request_again_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Open the request form with the role already picked."""
    ack()
    context["after_ack"](client.views_open, trigger_id=body["trigger_id"], view=views.request_modal(
        context["keyturn"].catalog, context["actor_id"], body["actions"][0]["value"]))
