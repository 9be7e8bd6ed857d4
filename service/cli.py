"""`keyturn`: the operators' command line, obeying the same rules as Slack."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import select

from service.catalog import CatalogError, load_catalog
from service.core.durations import DurationError, format_duration, parse_duration
from service.core.rules import Vote
from service.core.states import ENDING_GRANT_STATES, LIVE_GRANT_STATES
from service.operations.context import NotFound, Refused
from service.settings import Settings, SettingsError


def _runtime() -> Any:
    from service.app import create_app

    try:
        settings = Settings.from_env()
        if not os.environ.get("KEYTURN_LOG_LEVEL"):
            # An operator's terminal shows the command's own output; the audit log lines are for the service.
            settings = replace(settings, log_level="WARNING")
        app = create_app(settings)
    except (CatalogError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from exc
    return app.extensions["keyturn"]


@contextmanager
def _rules() -> Iterator[None]:
    """Refusals from the core become a clean error message and exit code 1."""
    try:
        yield
    except Refused as exc:
        raise click.ClickException(f"refused ({exc.reason.value}): {exc}") from exc
    except NotFound as exc:
        raise click.ClickException(str(exc)) from exc


def _left(expires: datetime, now: datetime) -> str:
    return format_duration(expires - now) if expires > now else "0s"


@click.group()
def main() -> None:
    """Keyturn: time-boxed access to AWS roles."""


@main.group()
def config() -> None:
    """Catalogue tools."""


@config.command("check")
@click.argument("path", type=click.Path(dir_okay=False))
def config_check(path: str) -> None:
    """Validate a catalogue file exactly as the service does."""
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        click.echo(f"{path}: {len(exc.errors)} error(s)", err=True)
        for error in exc.errors:
            click.echo(f"  {error}", err=True)
        sys.exit(1)
    click.echo(f"{path}: ok ({len(catalog.accounts)} accounts, {len(catalog.roles)} roles, "
               f"{len(catalog.identities)} identities)")


@main.group()
def db() -> None:
    """Database tools."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations (Alembic) to DATABASE_URL."""
    from service.store.db import migrate

    settings = Settings.from_env()
    migrate(settings.database_url)
    click.echo("database is at the newest schema")


@main.command()
@click.argument("role_id")
@click.argument("duration", required=False)
@click.argument("reason", nargs=-1)
@click.option("--as", "actor", required=True, help="Slack user id to act as (from the catalogue)")
@click.option("--ticket", default=None)
def request(role_id: str, duration: str | None, reason: tuple[str, ...], actor: str, ticket: str | None) -> None:
    """File a request: keyturn request prod-admin 2h fixing INC-123 --as U0ALICE01."""
    from service.operations.request_access import request_access

    try:
        wanted = parse_duration(duration) if duration else None
    except DurationError as exc:
        raise click.BadParameter(str(exc), param_hint="DURATION") from exc
    rt = _runtime()
    with _rules():
        filed = request_access(rt.ctx, requester=actor, role_id=role_id, duration=wanted,
                               reason=" ".join(reason) or None, ticket=ticket)
    click.echo(f"request {filed.request_id}: {filed.state.value}")


def _vote(request_id: int, actor: str, vote: Vote, note: str | None) -> None:
    from service.operations.decide_request import decide_request

    rt = _runtime()
    with _rules():
        decided = decide_request(rt.ctx, request_id=request_id, approver=actor, vote=vote, note=note)
    extra = f", grant {decided.grant_id}" if decided.grant_id else ""
    click.echo(f"request {request_id}: {decided.outcome.value} ({decided.approvals} approval(s){extra})")


@main.command()
@click.argument("request_id", type=int)
@click.option("--as", "actor", required=True)
@click.option("--note", default=None, help="break-glass self-approval needs a reason here")
def approve(request_id: int, actor: str, note: str | None) -> None:
    """Approve a pending request."""
    _vote(request_id, actor, Vote.APPROVE, note)


@main.command()
@click.argument("request_id", type=int)
@click.option("--as", "actor", required=True)
@click.option("--reason", default=None)
def deny(request_id: int, actor: str, reason: str | None) -> None:
    """Deny a pending request."""
    _vote(request_id, actor, Vote.DENY, reason)


@main.command()
@click.argument("grant_id", type=int)
@click.option("--as", "actor", required=True)
@click.option("--force", is_flag=True, help="admin: retry the clean-up of a revocation_failed grant")
def revoke(grant_id: int, actor: str, force: bool) -> None:
    """End a grant now (requester, approver or admin)."""
    from service.operations.revoke_grant import force_cleanup, revoke_grant

    rt = _runtime()
    with _rules():
        if force:
            force_cleanup(rt.ctx, grant_id=grant_id, actor_id=actor)
        else:
            revoke_grant(rt.ctx, grant_id=grant_id, actor_id=actor)
    click.echo(f"grant {grant_id}: removal requested")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="include ended grants")
def grants(show_all: bool) -> None:
    """Access that is active (or stuck), with time left."""
    from service.store.models import Grant

    rt = _runtime()
    now = datetime.now(UTC)
    states = [s.value for s in LIVE_GRANT_STATES | ENDING_GRANT_STATES]
    with rt.ctx.store() as session:
        query = select(Grant).order_by(Grant.id)
        if not show_all:
            query = query.where(Grant.state.in_(states))
        rows = session.execute(query).scalars().all()
    click.echo(f"{'ID':>5}  {'ROLE':<18} {'REQUESTER':<11} {'STATE':<18} {'EXPIRES (UTC)':<20} LEFT")
    for g in rows:
        flag = "  <- needs attention" if g.state == "revocation_failed" else ""
        click.echo(f"{g.id:>5}  {g.role_id:<18} {g.requester:<11} {g.state:<18} "
                   f"{g.expires_at:%Y-%m-%d %H:%M:%S}  {_left(g.expires_at, now)}{flag}")


def _since(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except DurationError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter("give a duration like 24h or an ISO time like 2026-11-01T00:00Z") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@main.command()
@click.option("--since", default=None, help="24h, 7d, or an ISO time")
@click.option("--format", "fmt", type=click.Choice(["table", "jsonl", "csv"]), default="table")
def audit(since: str | None, fmt: str) -> None:
    """The audit log, oldest first; jsonl and csv are ready for a SIEM."""
    from service.store.models import AuditEvent

    start = _since(since)
    rt = _runtime()
    fields = ["id", "at", "actor", "action", "request_id", "grant_id", "target_key", "hash_before",
              "hash_after", "detail"]
    writer = csv.DictWriter(sys.stdout, fieldnames=fields) if fmt == "csv" else None
    if writer:
        writer.writeheader()
    with rt.ctx.store() as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if start:
            query = query.where(AuditEvent.at >= start)
        for e in session.execute(query).scalars():
            row: dict[str, Any] = {f: getattr(e, f) for f in fields}
            row["at"] = e.at.isoformat().replace("+00:00", "Z")
            if writer:
                writer.writerow({**row, "detail": json.dumps(e.detail or {}, sort_keys=True)})
            elif fmt == "jsonl":
                click.echo(json.dumps(row, sort_keys=True))
            else:
                what = " ".join(f"{k}={v}" for k, v in (e.detail or {}).items())
                ids = " ".join(x for x in (f"req={e.request_id}" if e.request_id else "",
                                           f"grant={e.grant_id}" if e.grant_id else "") if x)
                click.echo(f"{row['at']}  {e.actor:<11} {e.action:<24} {ids} {what}".rstrip())


@main.command()
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True, help="every known target")
def sync(target: str | None, every: bool) -> None:
    """Run sync(target) here and now (operators; workers do this on their own)."""
    from service.operations.sweep import all_target_keys
    from service.sync.target import sync_target

    rt = _runtime()
    keys = all_target_keys(rt.ctx) if every else [target] if target else []
    if not keys:
        raise click.UsageError("give a target key or --all")
    for key in keys:
        report = sync_target(rt.ctx, aws=rt.aws, locks=rt.locks, target_key=key)
        click.echo(f"{key}: {'written' if report.wrote else 'unchanged'} {report.hash_before} -> {report.hash_after}")


@main.command()
@click.option("--short", is_flag=True, help="seconds-long grants, for a quick run")
@click.option("--keep", is_flag=True, help="then serve the web console on the same stack until Ctrl-C")
def demo(short: bool, keep: bool) -> None:
    """Walk one request through its whole life on local components (what `make demo` runs)."""
    from service.demo.run import run_demo

    sys.exit(run_demo(grant_seconds=8 if short else 15, keep=keep))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--no-write-probe", is_flag=True,
              help="never rewrite a trust policy unchanged to prove write access (when IAM cannot simulate)")
def doctor(fmt: str, no_write_probe: bool) -> None:
    """Check every catalogue role against AWS (Switch Role pitfalls, Keyturn's access); exit 1 on any FAIL."""
    from service.doctor.run import exit_code, render_json, render_table, run_doctor

    rt = _runtime()
    try:
        locks = rt.locks if rt.redis.ping() else None
    except Exception:
        locks = None  # no Redis: the probe runs unlocked (see probe_trust_write)
    results = run_doctor(rt.catalog, rt.aws.clients, write_probe=not no_write_probe, locks=locks,
                         console_url=rt.settings.console_url)
    click.echo(render_json(results) if fmt == "json" else render_table(results))
    sys.exit(exit_code(results))


@main.command()
@click.option("--check", is_flag=True,
              help="exit 0 if a running `keyturn socket` is connected (its health file is fresh), else 1")
@click.option("--health-file", type=click.Path(dir_okay=False), default=None,
              help="the file touched while connected  [default: /tmp/keyturn-socket-alive]")
@click.option("--max-age", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="with --check: seconds since the last touch that still count as connected")
def socket(check: bool, health_file: str | None, max_age: float) -> None:
    """Serve Slack over Socket Mode (KEYTURN_SLACK_MODE=socket, SLACK_APP_TOKEN): no public endpoint needed."""
    from pathlib import Path

    from service.slack import socket_mode

    path = Path(health_file) if health_file else socket_mode.HEALTH_FILE
    if check:
        alive = socket_mode.alive(path, max_age)
        click.echo("connected" if alive else f"not connected: {path} is missing or older than {max_age:g}s")
        sys.exit(0 if alive else 1)
    try:
        socket_mode.main(path)
    except (CatalogError, SettingsError, socket_mode.NotConnected) as exc:
        raise click.ClickException(str(exc)) from exc


@main.group("aws")
def aws_group() -> None:
    """AWS set-up tools."""


@aws_group.command("template")
@click.option("--catalog", "catalog_path", type=click.Path(dir_okay=False), default=None,
              help="catalogue file (default: $KEYTURN_CATALOG)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="keyturn-aws", show_default=True)
@click.option("--keyturn-account", default=None, help="Keyturn's own account (default: the one without manager role)")
@click.option("--keyturn-role-name", default="keyturn-service", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def aws_template(catalog_path: str | None, out_dir: str, keyturn_account: str | None, keyturn_role_name: str,
                 fmt: str) -> None:
    """Write CloudFormation for what the catalogue needs, and DEPLOY.md (the order to deploy it in)."""
    from pathlib import Path

    from service.aws_template.build import build_templates
    from service.aws_template.policies import TemplateError
    from service.aws_template.render import write_templates

    path = catalog_path or os.environ.get("KEYTURN_CATALOG")
    if not path:
        raise click.UsageError("give --catalog FILE (or set KEYTURN_CATALOG)")
    try:
        ts = build_templates(load_catalog(path), keyturn_account=keyturn_account, keyturn_role=keyturn_role_name)
    except CatalogError as exc:
        raise click.ClickException(f"{path}: " + "; ".join(exc.errors)) from exc
    except TemplateError as exc:
        raise click.ClickException("cannot build the templates:\n  " + "\n  ".join(exc.problems)) from exc
    for written in write_templates(ts, Path(out_dir), fmt):
        click.echo(f"wrote {written}")


if __name__ == "__main__":
    main()
