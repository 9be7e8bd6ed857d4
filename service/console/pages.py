"""The console's pages (GET): each one reads only what its reader may see (service/api/scope.py)."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

from flask import Response, render_template, request

from service.console import queries
from service.console.blueprint import bp, ctx, me, my_scope, page_error
from service.core.durations import format_duration
from service.core.rules import Vote, is_approver, security_key_needed


def _grant_pages_allowed() -> bool:
    scope = my_scope()
    return scope.admin or bool(scope.roles)


@bp.app_context_processor
def _nav() -> dict[str, Any]:
    from flask import session

    user = session.get("user")
    if not isinstance(user, str) or request.blueprint != "console":
        return {"me": None}
    scope = my_scope()
    return {"me": user, "my_name": session.get("name") or user, "is_admin": scope.admin,
            "approves": bool(scope.roles) or scope.admin}


@bp.app_template_filter("dur")
def _dur(value: int | timedelta) -> str:
    """Seconds or a timedelta as 2h, 1d2h, 45m."""
    return format_duration(value if isinstance(value, timedelta) else timedelta(seconds=value))


@bp.get("/")
def my_access() -> str:
    return render_template("my_access.html", access=queries.my_access(ctx(), me()), now=ctx().now())


@bp.get("/request")
def request_form() -> str:
    roles = ctx().roles_for(me())
    chosen = request.args.get("role", "")
    return render_template("request.html", roles=roles, chosen=chosen, form={}, errors={})


@bp.get("/approvals")
def approvals() -> str:
    scope = my_scope()
    rows = queries.pending_for(ctx(), scope)
    votes = queries.votes_of(ctx(), [r.id for r in rows])
    roles = {r.role_id: ctx().catalog.role(r.role_id) for r in rows}
    mine = {r.id: bool(roles[r.role_id]) and is_approver(roles[r.role_id].rules(), ctx().actor(me()))  # type: ignore[union-attr]
            for r in rows}
    keyed = {r.id: bool(roles[r.role_id]) and security_key_needed(
        roles[r.role_id].rules(), r.requester, ctx().actor(me()), Vote.APPROVE) for r in rows}  # type: ignore[union-attr]
    return render_template("approvals.html", rows=rows, votes=votes, roles=roles, mine=mine, keyed=keyed,
                           now=ctx().now())


@bp.get("/grants")
def grants() -> Any:
    if not _grant_pages_allowed():
        return page_error(403, "The grants page is for approvers and admins.")
    rows = queries.live_grants(ctx(), my_scope())
    now = ctx().now()
    return render_template("grants.html", rows=rows, left={g.id: queries.left(g.expires_at, now) for g in rows},
                           roles=ctx().catalog.roles)


@bp.get("/grants/<int(min=1, max=2147483647):grant_id>")
def grant(grant_id: int) -> str:
    detail = queries.grant_detail(ctx(), my_scope(), grant_id)
    return render_template("grant.html", d=detail, role=ctx().catalog.role(detail.grant.role_id),
                           left=queries.left(detail.grant.expires_at, ctx().now()))


def _audit_filters() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in queries.AUDIT_FILTERS:
        value = request.args.get(name, "").strip()[:512]
        if value and name.endswith("_id"):
            out[name] = int(value) if value.isdigit() and len(value) < 10 else -1
        elif value:
            out[name] = value
    return out


@bp.get("/audit")
def audit() -> Any:
    if not my_scope().admin:
        return page_error(403, "The audit log is for Keyturn's admins only.")
    filters = _audit_filters()
    return render_template("audit.html", events=queries.audit(ctx(), filters), filters=filters,
                           chains=queries.chains(ctx()))


@bp.get("/audit/export.<any(csv, json):kind>")
def audit_export(kind: str) -> Any:
    if not my_scope().admin:
        return page_error(403, "The audit log is for Keyturn's admins only.")
    events = queries.audit(ctx(), _audit_filters(), limit=100_000)
    rows = [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "request_id": e.request_id,
             "grant_id": e.grant_id, "target_key": e.target_key, "hash_before": e.hash_before,
             "hash_after": e.hash_after, "detail": json.dumps(e.detail or {}, sort_keys=True)} for e in events]
    if kind == "json":
        body, mimetype = json.dumps(rows, indent=1), "application/json"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["id"])
        writer.writeheader()
        # A cell that a spreadsheet would run as a formula is quoted with a leading apostrophe.
        writer.writerows({k: f"'{v}" if isinstance(v, str) and v[:1] in "=+-@" else v for k, v in r.items()}
                         for r in rows)
        body, mimetype = buffer.getvalue(), "text/csv"
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f"attachment; filename=keyturn-audit.{kind}"})
