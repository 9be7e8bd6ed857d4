"""Sign in with Slack (OpenID Connect through Authlib) and the gate in front of every console page.

The authorization code flow with state and nonce; the ID token's signature is checked against the provider's
JWKS (RS256 only, as its discovery document says), and its iss, aud, exp and nonce by Authlib. Then Keyturn's own
checks: the Slack user id claim is the subject, the workspace claim is the served workspace (or its Enterprise
Grid org), and the person is known to the catalogue. The session cookie is signed, Secure, HttpOnly, SameSite=Lax
and lives at most settings.console_session_lifetime from the sign-in, however busy it is.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import requests
from authlib.integrations.base_client.errors import OAuthError
from flask import redirect, render_template, request, session, url_for
from joserfc.errors import JoseError
from werkzeug.wrappers import Response

from service.api.scope import scope_of
from service.console.blueprint import bp, csrf_ok, ctx, page_error, state
from service.operations.context import Context
from service.store import repo

log = logging.getLogger(__name__)
PUBLIC = frozenset({"console.signin", "console.login", "console.callback", "console.static"})
USER_CLAIM, TEAM_CLAIM, ENTERPRISE_CLAIM = ("https://slack.com/user_id", "https://slack.com/team_id",
                                            "https://slack.com/enterprise_id")


def known(context: Context, user: str) -> bool:
    """Someone the catalogue knows: a person with an AWS identity, an admin, or an approver of some role."""
    if context.identity_of(user) is not None:
        return True
    scope = scope_of(context, user)
    return scope.admin or bool(scope.roles)


@bp.before_request
def _gate() -> Any:
    """Every page but sign-in needs a live session of a known person; every POST a valid CSRF token."""
    if request.endpoint in PUBLIC:
        return None
    user, since = session.get("user"), session.get("signed_in_at")
    lifetime = state().settings.console_session_lifetime.total_seconds()
    if not isinstance(user, str) or not isinstance(since, int | float) or time.time() - since > lifetime \
            or not known(ctx(), user):
        session.clear()
        if request.method != "GET":
            return page_error(401, "Your session has ended: sign in again.")
        return redirect(url_for("console.signin"))
    if request.method == "POST" and not csrf_ok():
        return page_error(400, "This form has expired or did not come from Keyturn: reload the page and try again.")
    return None


@bp.get("/signin")
def signin() -> Any:
    if isinstance(session.get("user"), str):
        return redirect(url_for("console.my_access"))
    return render_template("signin.html")


@bp.get("/login")
def login() -> Response:
    """To the provider, with a fresh state and nonce kept in this browser's session (Authlib)."""
    back = request.args.get("next", "")
    if local_path(back):  # e.g. a fresh sign-in asked for by the security-keys page
        session["after_sign_in"] = back
    redirect_uri = f"{state().settings.console_url}/console/callback"
    response: Response = state().oidc.authorize_redirect(redirect_uri)
    return response


@bp.get("/callback")
def callback() -> Any:
    settings = state().settings
    try:
        token = state().oidc.authorize_access_token(claims_options={
            "iss": {"essential": True, "values": [settings.oidc_issuer]},
            "exp": {"essential": True}, "sub": {"essential": True}})
    except (OAuthError, JoseError, ValueError, KeyError) as exc:
        log.warning("console sign-in refused: %s", type(exc).__name__, extra={"error": str(exc)[:200]})
        return page_error(403, "Sign-in failed: Slack's answer could not be verified. Try again.")
    except requests.RequestException as exc:
        log.warning("console sign-in: the provider did not answer (%s)", type(exc).__name__)
        return page_error(502, "Slack did not answer the sign-in. Try again in a moment.")
    claims = token.get("userinfo") or {}
    user, team, enterprise = claims.get(USER_CLAIM), claims.get(TEAM_CLAIM), claims.get(ENTERPRISE_CLAIM)
    if not claims or not isinstance(user, str) or claims.get("sub") != user:
        return page_error(403, "Sign-in failed: Slack's answer named no user.")
    refusal = state().workspace.refusal(team_id=team, actor_team_id=None, enterprise_id=enterprise, app_id=None)
    if refusal is not None:
        log.warning("console sign-in refused: %s", refusal, extra={"user": user})
        return page_error(403, "This Slack workspace is not the one Keyturn serves.")
    if not known(ctx(), user):
        log.warning("console sign-in refused: not in the catalogue", extra={"user": user})
        return page_error(403, "Keyturn does not know you: ask an admin to add you to the catalogue.")
    after = session.get("after_sign_in")
    session.clear()  # nothing from before the sign-in survives it (no fixation)
    session.permanent = True
    session.update(user=user, name=str(claims.get("name") or user)[:80], signed_in_at=int(time.time()),
                   csrf=secrets.token_urlsafe(32), team=str(team or enterprise or ""))
    with ctx().store.begin() as db:
        repo.audit(db, at=ctx().now(), actor=user, action="console.signed_in", team=team, enterprise=enterprise)
    return redirect(after if isinstance(after, str) and local_path(after) else url_for("console.my_access"))


def local_path(path: str) -> bool:
    """A console path to come back to after signing in (never another site: no scheme, host or //)."""
    return path.startswith("/console/") and not path.startswith("//") and "\\" not in path and "//" not in path \
        and len(path) < 200


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("console.signin"), code=303)
