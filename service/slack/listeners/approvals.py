"""Approvers' buttons: Approve, Deny (with an optional reason), and break-glass self-approval."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import App

from service.core.rules import Vote, is_approver
from service.operations.context import Context
from service.operations.decide_request import decide_request
from service.slack import views
from service.store.models import AccessRequest


def register(app: App) -> None:
    app.action("approve_request")(approve_clicked)
    app.action("deny_request")(deny_clicked)
    app.view("deny_request")(deny_submitted)
    app.view("break_glass")(break_glass_submitted)


def _request_id(body: dict[str, Any]) -> int:
    return int(body["actions"][0]["value"])


def approve_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Approve: the clicker is the signed payload's user, checked against the role's approvers now."""
    ctx: Context = context["keyturn"]
    request_id = _request_id(body)
    with ctx.store() as session:
        request = session.get(AccessRequest, request_id)
        role = ctx.catalog.role(request.role_id) if request else None
    if request and role and role.allow_self_approval and request.requester == context["actor_id"]:
        ack()  # the trigger id below is only good for 3 s
        # Break-glass needs a reason and is announced loudly: ask for it first.
        client.views_open(trigger_id=body["trigger_id"], view=views.reason_modal(
            "break_glass", "Break-glass approval", "Why must you approve your own access?",
            {"request_id": request_id}))
        return
    # Decide, then acknowledge: the decision is one short transaction (the IAM work and the messages are
    # queued for workers). Acknowledging first would free the HTTP thread while Bolt's small listener pool
    # still holds the decision, so under load clicks would pile up unseen behind it (bench/RESULTS.md).
    # A refusal raises before ack(): the central error handler then acknowledges and tells the clicker why.
    decide_request(ctx, request_id=request_id, approver=context["actor_id"], vote=Vote.APPROVE,
                   team_id=context["team_id"])
    ack()


def deny_clicked(ack: Any, body: dict[str, Any], context: Any, client: Any) -> None:
    """Deny: ask an approver for an optional reason, then decide; anyone else is refused at the click."""
    ack()
    ctx: Context = context["keyturn"]
    request_id = _request_id(body)
    with ctx.store() as session:
        request = session.get(AccessRequest, request_id)
        role = ctx.catalog.role(request.role_id) if request else None
    if role is None or not is_approver(role.rules(), ctx.actor(context["actor_id"])):
        # The core refuses (and audits) it now, rather than after a form the clicker may not fill in.
        decide_request(ctx, request_id=request_id, approver=context["actor_id"], vote=Vote.DENY,
                       team_id=context["team_id"])
        return
    client.views_open(trigger_id=body["trigger_id"], view=views.reason_modal(
        "deny_request", "Deny request", "Reason (optional, shown to the requester)", {"request_id": request_id}))


def _reason(view: dict[str, Any]) -> str | None:
    return ((view["state"]["values"].get("reason") or {}).get("reason") or {}).get("value")


def deny_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """The deny form: the decision is taken with the submitter's signed identity."""
    ack()
    request_id = int(json.loads(view["private_metadata"])["request_id"])
    decide_request(context["keyturn"], request_id=request_id, approver=context["actor_id"], vote=Vote.DENY,
                   note=_reason(view), team_id=context["team_id"])


def break_glass_submitted(ack: Any, view: dict[str, Any], context: Any) -> None:
    """Self-approval on a break-glass role; the core insists on the reason."""
    reason = _reason(view)
    if not (reason or "").strip():
        ack(response_action="errors", errors={"reason": "Break-glass self-approval needs a reason."})
        return
    ack()
    request_id = int(json.loads(view["private_metadata"])["request_id"])
    decide_request(context["keyturn"], request_id=request_id, approver=context["actor_id"], vote=Vote.APPROVE,
                   note=reason, team_id=context["team_id"])
