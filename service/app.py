"""create_app(settings): the composition root for the web process, the worker and the CLI."""

from __future__ import annotations

import logging
import re
import uuid

from flask import Flask, Response, g, request
from slack_sdk import WebClient

from service.api.health import create_sqlite_schema, register_health
from service.logs import request_id_var, setup_logging
from service.runtime import Runtime, build_runtime
from service.settings import Settings, SettingsError, console_problems, serves_slack, slack_problems

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None, http: bool = True) -> Flask:
    """Build the Flask app and its Celery app; refuses to start on an invalid catalogue.

    http=False (the worker, beat) leaves out the routes, Bolt and the REST API: a worker restarted after an
    outage has overdue revocations waiting, and those imports were a tenth of its boot (bench/RESULTS.md).
    """
    from workers.celery_app import celery_init_app

    settings = settings or Settings.from_env()
    setup_logging(settings.log_level, (settings.slack_bot_token, settings.slack_signing_secret,
                                       settings.slack_app_token, settings.task_signing_key, *settings.api_tokens))
    slack = http and serves_slack(settings)
    problems = slack_problems(settings) if slack else []
    if problems:  # before anything is built: a web with a guessable secret must not start at all
        raise SettingsError("Keyturn cannot serve Slack with these settings:\n  " + "\n  ".join(problems))
    console = http and bool(settings.console_url)  # the web console (service/console), only when configured
    if console and (bad := console_problems(settings)):
        raise SettingsError("Keyturn cannot serve the console with these settings:\n  " + "\n  ".join(bad))
    app = Flask("keyturn")
    celery_app = celery_init_app(app, settings)
    rt = runtime or build_runtime(settings, celery_app=celery_app)
    create_sqlite_schema(rt.engine, settings.database_url)
    app.extensions["keyturn"] = rt
    client = _mount_notifier(app, settings, rt)
    if not http:
        if not settings.task_signing_key:
            log.error("KEYTURN_TASK_SIGNING_KEY is not set: this worker refuses every queued Slack interaction")
        return app
    if slack:
        _mount_slack(app, settings, rt, client)
    else:
        log.warning("SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN are not set: /slack/events is not served")
    _mount_observability(app, rt)
    from service.api.rest import register_api

    register_api(app, settings, rt)  # /api/v1 (REST, bearer tokens) and /api/openapi.json
    register_health(app, lambda: rt.engine, rt.redis)  # /healthz, /readyz
    if console:
        from service.console import register_console

        register_console(app, settings, rt)  # /console: Sign in with Slack, the pages
    return app


def _mount_notifier(app: Flask, settings: Settings, rt: Runtime) -> WebClient:
    """The Slack Web API client, user-group lookups for approvers, and the notifier the workers use."""
    from service.slack.groups import UserGroups
    from service.slack.notifier import SlackNotifier
    from service.slack.web_client import make_web_client

    client = make_web_client(settings)
    approver_groups = frozenset(a for r in rt.catalog.roles.values() for a in r.approvers if a.startswith("S"))
    if approver_groups and settings.slack_bot_token:
        rt.ctx.groups_of = UserGroups(client, approver_groups).groups_of
    if settings.slack_bot_token:
        # Without a token (the demo, a dry run) notifications are only logged: nothing calls out.
        app.extensions["keyturn.notifier"] = SlackNotifier(client, rt.ctx.store, rt.catalog)
    return client


def _mount_slack(app: Flask, settings: Settings, rt: Runtime, client: WebClient) -> None:
    """POST /slack/events for commands, interactivity and events; in Socket Mode the same Bolt app is left in
    app.extensions["keyturn.bolt"] for `keyturn socket` (service/slack/socket_mode.py) and no route is mounted."""
    from slack_bolt.adapter.flask import SlackRequestHandler

    from service.slack.bolt_app import build_bolt_app

    bolt = build_bolt_app(settings, rt.ctx, client)
    app.extensions["keyturn.bolt"] = bolt
    if settings.slack_mode == "socket":
        log.info("KEYTURN_SLACK_MODE=socket: Slack is served by `keyturn socket`; /slack/events is not mounted")
        return
    handler = SlackRequestHandler(bolt)

    @app.post("/slack/events")
    def slack_events() -> Response:
        """Every Slack delivery; Bolt verifies the signature (401 otherwise) before any listener runs."""
        return handler.handle(request)


def _mount_observability(app: Flask, rt: Runtime) -> None:
    """A request id on every request and log line; Prometheus metrics read from the database."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from service.api.metrics import KeyturnCollector

    registry = CollectorRegistry()
    registry.register(KeyturnCollector(rt.ctx.store, rt.redis))

    @app.before_request
    def _request_id() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        rid = incoming if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", incoming) else uuid.uuid4().hex
        g.request_id = rid
        request_id_var.set(rid)

    @app.teardown_request
    def _forget_request_id(_exc: BaseException | None) -> None:
        request_id_var.set(None)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus exposition."""
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
