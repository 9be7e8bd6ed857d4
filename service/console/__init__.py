"""The web console: Sign in with Slack (OpenID Connect), server-rendered pages, the same use cases as Slack.

Mounted by create_app only when KEYTURN_CONSOLE_URL is set (settings.console_problems refuses a start with a
missing or placeholder client secret or session key). Every page is under /console.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from service.console.blueprint import STATE_KEY, ConsoleState, bp

if TYPE_CHECKING:
    from service.core.slack_trust import Workspace
    from service.runtime import Runtime
    from service.settings import Settings


def register_console(app: Flask, settings: Settings, rt: Runtime, workspace: Workspace | None = None) -> None:
    """Mount /console: cookie session settings, the OpenID client, the pages. `workspace`: who may sign in
    (default: the configured team / enterprise ids, else what Slack's auth.test reports, as the Bolt app)."""
    from authlib.integrations.flask_client import OAuth

    from service.console import actions, auth, pages, security_keys  # noqa: F401  (their routes join the blueprint)

    app.secret_key = settings.console_session_secret
    app.config.update(
        SESSION_COOKIE_NAME="keyturn_console", SESSION_COOKIE_PATH="/console", SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=settings.console_session_lifetime,
    )
    oauth = OAuth(app)
    client = oauth.register(
        "slack", client_id=settings.oidc_client_id, client_secret=settings.oidc_client_secret,
        server_metadata_url=f"{settings.oidc_issuer}/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile", "token_endpoint_auth_method": "client_secret_post",
                       "timeout": 10},
    )
    app.extensions[STATE_KEY] = ConsoleState(ctx=rt.ctx, settings=settings, oidc=client,
                                             workspace=workspace or _workspace(settings))
    app.register_blueprint(bp)


def _workspace(settings: Settings) -> Workspace:
    from service.core.slack_trust import Workspace

    if settings.slack_team_ids or settings.slack_enterprise_id:
        return Workspace(frozenset(settings.slack_team_ids), settings.slack_enterprise_id)
    from service.slack.bolt_app import workspace_of
    from service.slack.web_client import make_web_client

    return workspace_of(settings, make_web_client(settings))
