"""Approvers' buttons: Approve, Deny (with an optional reason), and break-glass self-approval."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import App

from service.core.rules import Vote, is_approver
from service.operations.context import Context
from service.operations.decide_request import decide_request
from service.slack import views
from service.slack.interactions import queue
from service.store.limits import NOTE_MAX, text_problem
from service.store.models import AccessRequest


def register(app: App) -> None:
    app.action("approve_request")(approve_clicked)
    app.action("deny_request")(deny_clicked)
    app.view("deny_request")(deny_submitted)
    app.view("break_glass")(break_glass_submitted)


def _request_id(body: dict[str, Any]) -> int:
    return int(body["actions"][0]["value"])


def approve_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Approve: queued for a worker, which decides as the signed payload's user (the core checks it there)."""
    ctx: Context = context["keyturn"]
    request_id, actor = _request_id(body), context["actor_id"]
    if _own_break_glass_request(ctx, request_id, actor):
        ack()
        # Break-glass needs a reason and is announced loudly: ask for it first (the trigger id lives 3 s).
        context["after_ack"](client.views_open, trigger_id=body["trigger_id"], view=views.reason_modal(
            "break_glass", "Break-glass approval", "Why must you approve your own access?",
            {"request_id": request_id}))
        return
    # The acknowledgement does not wait for the decision (a transaction): under load it would queue behind
    # earlier decisions on the web's threads (bench/RESULTS.md). The queue is durable; a refusal is
    # answered ephemerally by the worker.
    queue(ctx, "approve", request_id=request_id, user=actor, team=context["team_id"],
          response_url=body.get("response_url"), token=body.get("trigger_id"))
    ack()


def _own_break_glass_request(ctx: Context, request_id: int, actor: str) -> bool:
    # Most clickers can request no self-approvable role: then the database is not asked at all.
    if not any(role.allow_self_approval for role in ctx.roles_for(actor)):
        return False
    with ctx.store() as session:
        request = session.get(AccessRequest, request_id)
        role = ctx.catalog.role(request.role_id) if request else None
    # A break-glass approval that needs a security key is confirmed in the console (the reason asked there).
    return bool(request and role and role.allow_self_approval and request.requester == actor
                and not (role.require_security_key or role.break_glass_requires_security_key))


def deny_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Deny: ask an approver for an optional reason, then decide; anyone else is refused at the click."""
    ctx: Context = context["keyturn"]
    request_id = _request_id(body)
    with ctx.store() as session:
        request = session.get(AccessRequest, request_id)
        role = ctx.catalog.role(request.role_id) if request else None
    if role is None or not is_approver(role.rules(), ctx.actor(context["actor_id"])):
        # The core refuses (and audits) it now, rather than after a form the clicker may not fill in; the
        # refusal raises before ack(), and the central error handler answers.
        decide_request(ctx, request_id=request_id, approver=context["actor_id"], vote=Vote.DENY,
                       team_id=context["team_id"])
        ack()
        return
    ack()
    context["after_ack"](client.views_open, trigger_id=body["trigger_id"], view=views.reason_modal(
        "deny_request", "Deny request", "Reason (optional, shown to the requester)", {"request_id": request_id}))


def _reason(view: dict[str, Any]) -> str | None:
    return ((view["state"]["values"].get("reason") or {}).get("reason") or {}).get("value")


def deny_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """The deny form: the decision is taken with the submitter's signed identity."""
    problem = text_problem(_reason(view), NOTE_MAX)
    if problem:
        ack(response_action="errors", errors={"reason": problem})
        return
    request_id = int(json.loads(view["private_metadata"])["request_id"])
    decide_request(context["keyturn"], request_id=request_id, approver=context["actor_id"], vote=Vote.DENY,
                   note=_reason(view), team_id=context["team_id"])
    ack()


def break_glass_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """Self-approval on a break-glass role; the core insists on the reason."""
    reason = _reason(view)
    problem = text_problem(reason, NOTE_MAX) if (reason or "").strip() else "Break-glass self-approval needs a reason."
    if problem:
        ack(response_action="errors", errors={"reason": problem})
        return
    request_id = int(json.loads(view["private_metadata"])["request_id"])
    decide_request(context["keyturn"], request_id=request_id, approver=context["actor_id"], vote=Vote.APPROVE,
                   note=reason, team_id=context["team_id"])
    ack()
