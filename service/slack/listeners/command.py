"""The /access slash command and the request form it opens."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from service.catalog import Role
from service.core.durations import DurationError, DurationTooLong, parse_duration
from service.core.rules import MESSAGES, Reason
from service.operations.context import Context, Refused
from service.operations.request_access import request_access
from service.slack import views
from service.slack.interactions import queue
from service.slack.listeners import submission_token
from service.slack.text import esc, seconds
from service.store.limits import REASON_MAX, TICKET_MAX, text_problem


def register(app: App) -> None:
    app.command("/access")(access_command)
    app.view("request_access")(request_form_submitted)
    app.action("role")(role_picked)


def access_command(ack: Any, command: dict[str, Any], context: Any, client: Any) -> None:
    """/access: a form with no arguments, else file directly, `list` or `help`."""
    ctx: Context = context["keyturn"]
    user: str = context["actor_id"]
    text = (command.get("text") or "").strip()
    if not text:
        if not ctx.roles_for(user):
            # Slack rejects a role picker without options: say why instead of failing to open it.
            ack(response_type="ephemeral", text=MESSAGES[Reason.NO_PRINCIPAL])
            return
        ack()
        context["after_ack"](client.views_open, trigger_id=command["trigger_id"],
                             view=views.request_modal(ctx.catalog, user))
        return
    word = text.split()[0].lower()
    if word == "help":
        ack(response_type="ephemeral", text=views.HELP)
        return
    common = {"user": user, "team": context["team_id"], "response_url": command.get("response_url")}
    if word == "list":
        queue(ctx, "list", **common)
        ack(response_type="ephemeral", text="Looking up your access…")
        return
    role_id, duration, reason = parse_text(ctx, user, text)
    length = int(duration.total_seconds())
    # The trigger id is unique per invocation: a redelivered task finds the request it filed.
    queue(ctx, "file", role=role_id, duration=length, reason=reason, token=command.get("trigger_id"), **common)
    ack(response_type="ephemeral", text=f"Filing your request for `{esc(role_id)}` ({seconds(length)})…")


def parse_text(ctx: Context, user: str, text: str) -> tuple[str, Any, str | None]:
    """`ROLE DURATION REASON…`; errors say what is allowed."""
    parts = text.split(maxsplit=2)
    role_id = parts[0]
    role = ctx.catalog.role(role_id)
    if role is None:
        allowed = ", ".join(f"`{r.id}`" for r in ctx.roles_for(user)) or "none"
        raise Refused(Reason.UNKNOWN_ROLE, f"There is no role `{esc(role_id)}`. Roles you can request: {allowed}.")
    if len(parts) < 2:
        raise Refused(Reason.DURATION_NOT_POSITIVE,
                      f"Say how long, e.g. `/access {role.id} 1h fixing INC-123` "
                      f"(at most {seconds(int(role.max_duration.total_seconds()))}).")
    try:
        duration = parse_duration(parts[1])
    except DurationTooLong as exc:
        raise Refused(Reason.DURATION_TOO_LONG, duration_problem(exc, role)) from exc
    except DurationError as exc:
        raise Refused(Reason.DURATION_NOT_POSITIVE,
                      f"`{esc(parts[1][:32])}` is not a duration: write 30m, 2h or 1d "
                      f"(at most {seconds(int(role.max_duration.total_seconds()))} for {role.id}).") from exc
    reason = parts[2] if len(parts) > 2 else None
    problem = text_problem(reason, REASON_MAX)
    if problem:
        raise Refused(Reason.REASON_REQUIRED, f"Your reason cannot be filed: {problem}")
    return role_id, duration, reason


def duration_problem(exc: DurationError, role: Role | None) -> str:
    """What to say next to a duration that cannot be used; a huge one is told the role's maximum."""
    if isinstance(exc, DurationTooLong) and role is not None:
        return f"That is longer than {role.id} allows: at most {seconds(int(role.max_duration.total_seconds()))}."
    return str(exc)


def _value(state: dict[str, Any], block: str) -> str | None:
    element = (state.get(block) or {}).get(block) or {}
    if element.get("type") == "static_select" or "selected_option" in element:
        return (element.get("selected_option") or {}).get("value")
    return element.get("value")


def request_form_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """The /access form: errors go back into the form next to the field."""
    ctx: Context = context["keyturn"]
    state = view["state"]["values"]
    role_id, raw, reason, ticket = (_value(state, b) for b in ("role", "duration", "reason", "ticket"))
    problems = {name: problem for name, problem in (
        ("reason", text_problem(reason, REASON_MAX)), ("ticket", text_problem(ticket, TICKET_MAX, one_line=True)),
    ) if problem}
    try:
        duration = parse_duration(raw or "")
    except DurationError as exc:
        problems["duration"] = duration_problem(exc, ctx.catalog.role(role_id or ""))
    if problems:
        ack(response_action="errors", errors=problems)  # every bad value, each next to its field
        return
    try:
        request_access(ctx, requester=context["actor_id"], role_id=role_id or "", duration=duration, reason=reason,
                       ticket=ticket, team_id=context["team_id"],
                       client_token=submission_token(view, context["actor_id"]))
    except Refused as exc:
        field = {Reason.REASON_REQUIRED: "reason", Reason.DURATION_TOO_LONG: "duration",
                 Reason.DURATION_NOT_POSITIVE: "duration"}.get(exc.reason, "role")
        ack(response_action="errors", errors={field: str(exc)})
        return
    ack()


def role_picked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """The form follows the picked role: its maximum, its default duration, whether a reason is required."""
    ack()
    picked = (body["actions"][0].get("selected_option") or {}).get("value")
    context["after_ack"](client.views_update, view_id=body["view"]["id"], view=views.request_modal(
        context["keyturn"].catalog, context["actor_id"], picked))
