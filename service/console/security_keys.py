"""Security keys in the console: register, list and remove one's keys (a fresh sign-in needed to change them),
and the confirm page where an approval of a role that asks for a key is cast, only once an assertion verified.

The pages with a key ceremony load one static script (static/security_key.js: CSP script-src 'self', nothing
inline); every other page keeps script-src 'none'. The script fetches options with the page's CSRF token, asks
the browser's navigator.credentials, and submits the form with the answer; the server checks it
(webauthn_rp.py) and casts the vote through decide_request, the use case Slack and REST call.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from flask import Response, flash, jsonify, make_response, redirect, render_template, request, session, url_for

from service.console import webauthn_rp as rp
from service.console.blueprint import CSP, bp, ctx, me, page_error, state
from service.core.rules import Vote, is_approver, security_key_needed
from service.operations.context import NotFound
from service.operations.decide_request import decide_request
from service.store.limits import NOTE_MAX
from service.store.models import AccessRequest

ID = "int(min=1, max=2147483647)"
FRESH_SIGN_IN = timedelta(minutes=5)  # adding or removing a key needs a sign-in at most this old
KEY_CSP = CSP.replace("script-src 'none'", "script-src 'self'") + "; connect-src 'self'"


def _team() -> str:
    return str(session.get("team") or "")


def _party() -> rp.RelyingParty:
    return rp.RelyingParty.of(state().settings.console_url)


def fresh() -> bool:
    since = session.get("signed_in_at")
    return isinstance(since, int | float) and time.time() - since <= FRESH_SIGN_IN.total_seconds()


def _sign_in_again() -> Any:
    return redirect(url_for("console.login", next=url_for("console.keys")), code=303)


def _with_script(body: str, status: int = 200) -> Response:
    response = make_response(body, status)
    response.headers["Content-Security-Policy"] = KEY_CSP
    return response


def _refusal(exc: rp.KeyRefused, status: int = 400) -> tuple[Response, int]:
    return jsonify(error=str(exc)), status


@bp.get("/keys")
def keys() -> Response:
    return _with_script(render_template("keys.html", keys=rp.keys_of(ctx(), me(), _team()), fresh=fresh(),
                                        fresh_minutes=int(FRESH_SIGN_IN.total_seconds() // 60)))


@bp.post("/keys/options")
def key_options() -> Any:
    if not fresh():
        return jsonify(error="Sign in again to add a security key.", signin=url_for("console.login",
                                                                                     next=url_for("console.keys"))), 401
    try:
        options = rp.registration_options(ctx(), _party(), user=me(), team=_team(), name=str(session.get("name")))
    except rp.KeyRefused as exc:
        return _refusal(exc, 403)
    return Response(options, mimetype="application/json")


@bp.post("/keys")
def add_key() -> Any:
    if not fresh():
        return _sign_in_again()
    label = (request.form.get("label") or "").strip()[:64] or "Security key"
    try:
        key = rp.register(ctx(), _party(), user=me(), team=_team(), label=label,
                          credential=request.form.get("credential", ""))
    except rp.KeyRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for("console.keys"), code=303)
    flash(f"Security key “{key.label}” added.")
    return redirect(url_for("console.keys"), code=303)


@bp.post(f"/keys/<{ID}:key_id>/remove")
def remove_key(key_id: int) -> Any:
    if not fresh():
        return _sign_in_again()
    removed = rp.remove(ctx(), user=me(), team=_team(), key_id=key_id)
    if removed is None:
        raise NotFound(f"no security key {key_id} of yours")
    flash(f"Security key “{removed.label}” removed.")
    return redirect(url_for("console.keys"), code=303)


def _pending_for_me(request_id: int) -> tuple[AccessRequest, Any]:
    """The request and its role, when the signed-in person approves that role (else 404: nothing to see)."""
    with ctx().store() as db:
        found = db.get(AccessRequest, request_id)
    role = ctx().catalog.role(found.role_id) if found else None
    if found is None or role is None or not is_approver(role.rules(), ctx().actor(me())):
        raise NotFound(f"no request {request_id} you approve")
    return found, role


def needs_key(found: AccessRequest, role: Any) -> bool:
    return security_key_needed(role.rules(), found.requester, ctx().actor(me()), Vote.APPROVE)


def keyed_vote(request_id: int) -> bool:
    """Whether the signed-in person's approval of this request counts only with a security key."""
    with ctx().store() as db:
        found = db.get(AccessRequest, request_id)
    role = ctx().catalog.role(found.role_id) if found else None
    return bool(found and role and needs_key(found, role))


@bp.get(f"/requests/<{ID}:request_id>/confirm")
def confirm(request_id: int) -> Any:
    found, role = _pending_for_me(request_id)
    has_keys = bool(rp.keys_of(ctx(), me(), _team()))
    body = render_template("confirm.html", r=found, role=role, has_keys=has_keys, own=found.requester == me(),
                           keyed=needs_key(found, role))
    return _with_script(body, 200 if has_keys else 403)


@bp.post(f"/requests/<{ID}:request_id>/confirm/options")
def confirm_options(request_id: int) -> Any:
    _pending_for_me(request_id)
    try:
        options = rp.assertion_options(ctx(), _party(), user=me(), team=_team(), request_id=request_id)
    except rp.KeyRefused as exc:
        return _refusal(exc, 403)
    return Response(options, mimetype="application/json")


@bp.post(f"/requests/<{ID}:request_id>/confirm")
def confirm_vote(request_id: int) -> Any:
    """The approval, cast with the verified credential's id (the use case refuses it without one)."""
    _pending_for_me(request_id)
    try:
        credential_id = rp.verify_assertion(ctx(), _party(), user=me(), team=_team(), request_id=request_id,
                                            credential=request.form.get("credential", ""))
    except rp.KeyRefused as exc:
        return page_error(403, str(exc))
    note = (request.form.get("note") or "").strip()[:NOTE_MAX] or None
    decided = decide_request(ctx(), request_id=request_id, approver=me(), vote=Vote.APPROVE, note=note,
                             security_key=credential_id)
    flash(f"Request #{request_id}: {decided.outcome.value} (confirmed with your security key).")
    return redirect(url_for("console.approvals"), code=303)
