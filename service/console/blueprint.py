"""The console's blueprint and what its views share: the state, the signed-in person, errors, headers."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, session
from markupsafe import Markup, escape

from service.api.scope import Scope, scope_of
from service.core.rules import Reason
from service.core.slack_trust import Workspace
from service.operations.context import Context, NotFound, Refused
from service.settings import Settings

STATE_KEY = "keyturn.console"
CSRF_FIELD = "csrf_token"
# Refusals because the request or grant has moved on: 409 (as the REST API). Every other refusal: 403.
CONFLICTS = frozenset({Reason.NOT_PENDING, Reason.NOT_REVOCABLE, Reason.ALREADY_VOTED})
# No script at all; styles from our own file only; no framing; forms post only here.
CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin", "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")


@dataclass(frozen=True)
class ConsoleState:
    ctx: Context
    settings: Settings
    oidc: Any  # Authlib's Flask OAuth client for Sign in with Slack
    workspace: Workspace


def state() -> ConsoleState:
    found: ConsoleState = current_app.extensions[STATE_KEY]
    return found


def ctx() -> Context:
    return state().ctx


def me() -> str:
    """The signed-in Slack user id (the before_request hook guarantees one on every non-public page)."""
    return str(session["user"])


def my_scope() -> Scope:
    """What the signed-in person may see: the REST API's own rule (api/scope.py), worked out per request."""
    return scope_of(ctx(), me())


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return str(token)


def csrf_ok() -> bool:
    sent, kept = request.form.get(CSRF_FIELD, ""), session.get("csrf", "")
    return bool(kept) and hmac.compare_digest(sent.encode(), str(kept).encode())


def page_error(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


@bp.app_template_global()
def csrf_field() -> Markup:
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(csrf_token()))


@bp.after_request
def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@bp.errorhandler(Refused)
def _refused(exc: Refused) -> tuple[str, int]:
    return page_error(409 if exc.reason in CONFLICTS else 403, str(exc))


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> tuple[str, int]:
    return page_error(404, "There is nothing here, or nothing you may see.")
