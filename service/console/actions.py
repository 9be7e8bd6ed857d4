"""The console's forms (POST): each one calls the use case Slack and REST call, as the signed-in person.

The gate (auth.py) has already checked the session and the CSRF token. Rules are the use cases': a refusal is
shown with the core's message (403, or 409 when the request or grant has moved on), as the REST API answers.
"""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for

from service.console.blueprint import bp, ctx, me
from service.console.security_keys import keyed_vote
from service.core.durations import DurationError, parse_duration
from service.core.rules import Vote
from service.operations.cancel_request import cancel_request
from service.operations.context import NotFound, Refused
from service.operations.decide_request import decide_request
from service.operations.request_access import request_access
from service.operations.revoke_grant import revoke_grant
from service.store.limits import NOTE_MAX, REASON_MAX, TICKET_MAX

ID = "int(min=1, max=2147483647)"


def _text(name: str, limit: int) -> str | None:
    value = (request.form.get(name) or "").strip()
    return value[:limit] or None


def _back(endpoint: str) -> Any:
    return redirect(url_for(endpoint), code=303)


@bp.post("/request")
def file_request() -> Any:
    form = {k: request.form.get(k, "") for k in ("role", "duration", "reason", "ticket")}
    errors: dict[str, str] = {}
    try:
        duration = parse_duration(form["duration"] or "1h")
    except DurationError as exc:
        errors["duration"] = str(exc)
    if len(form["reason"]) > REASON_MAX:
        errors["reason"] = f"at most {REASON_MAX} characters"
    if not errors:
        try:
            filed = request_access(ctx(), requester=me(), role_id=form["role"], duration=duration,
                                   reason=_text("reason", REASON_MAX), ticket=_text("ticket", TICKET_MAX))
        except Refused as exc:
            errors["form"] = str(exc)
        else:
            flash(f"Request #{filed.request_id} filed: " + ("approved." if filed.grant_id else "waiting for approval."))
            return _back("console.my_access")
    return render_template("request.html", roles=ctx().roles_for(me()), chosen=form["role"], form=form,
                           errors=errors), 400 if "form" not in errors else 403


@bp.post(f"/requests/<{ID}:request_id>/cancel")
def cancel(request_id: int) -> Any:
    cancel_request(ctx(), request_id=request_id, actor_id=me())
    flash(f"Request #{request_id} cancelled.")
    return _back("console.my_access")


@bp.post(f"/requests/<{ID}:request_id>/approve")
def approve(request_id: int) -> Any:
    if keyed_vote(request_id):  # the role asks for a security key: the confirm page casts the vote
        return redirect(url_for("console.confirm", request_id=request_id), code=303)
    return _vote(request_id, Vote.APPROVE, _text("note", NOTE_MAX))


@bp.post(f"/requests/<{ID}:request_id>/deny")
def deny(request_id: int) -> Any:
    return _vote(request_id, Vote.DENY, _text("reason", NOTE_MAX))


def _vote(request_id: int, vote: Vote, note: str | None) -> Any:
    decided = decide_request(ctx(), request_id=request_id, approver=me(), vote=vote, note=note)
    flash(f"Request #{request_id}: {decided.outcome.value}.")
    return _back("console.approvals")


@bp.post(f"/grants/<{ID}:grant_id>/done")
def done(grant_id: int) -> Any:
    """"I'm done": the requester ends their own access now."""
    revoke_grant(ctx(), grant_id=grant_id, actor_id=me(), note="I'm done (console)")
    flash("Removing your access now.")
    return _back("console.my_access")


@bp.post(f"/grants/<{ID}:grant_id>/revoke")
def revoke(grant_id: int) -> Any:
    revoke_grant(ctx(), grant_id=grant_id, actor_id=me(), note=_text("reason", NOTE_MAX))
    flash(f"Grant #{grant_id} is being revoked.")
    return _back("console.grants")


@bp.post(f"/grants/<{ID}:grant_id>/extend")
def extend(grant_id: int) -> Any:
    """More time on a live grant: a new request for approval (request_access checks it is the person's own)."""
    from service.store.models import Grant

    with ctx().store() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or grant.requester != me():
            raise NotFound(f"no grant {grant_id} of yours")
        role_id = grant.role_id
    try:
        duration = parse_duration(request.form.get("duration") or "1h")
    except DurationError as exc:
        flash(f"Extend: {exc}", "error")
        return _back("console.my_access")
    filed = request_access(ctx(), requester=me(), role_id=role_id, duration=duration,
                           reason=_text("reason", REASON_MAX), extends_grant_id=grant_id)
    flash(f"Extension #{filed.request_id} filed: waiting for approval.")
    return _back("console.my_access")
