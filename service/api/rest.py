"""The REST API (OpenAPI 3) for clients that are not Slack: the same use cases, so the same rules.

The views only translate HTTP to the use cases and back. Every rule (who approves, no self-approval,
quorum, durations, who may cancel or revoke) is enforced by the use cases, exactly as for Slack, and
refusals of identity are audited there. The actor of every write is the Slack user id the bearer token
maps to (settings.api_tokens), never a field of the body.
"""

from __future__ import annotations

import hmac
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, g, request, url_for
from flask_smorest import Api, Blueprint, abort
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from service.api.limits import limit_request_bodies
from service.api.schemas import (
    DESCRIPTION,
    PAGINATION_HEADER,
    ApproveSchema,
    AuditEventSchema,
    AuditFilterSchema,
    DecisionSchema,
    DenySchema,
    ErrorSchema,
    GrantFilterSchema,
    GrantSchema,
    NewRequestSchema,
    RequestFilterSchema,
    RequestSchema,
    RevokeSchema,
)
from service.api.scope import Scope, scope_of
from service.core.durations import format_duration
from service.core.rules import Reason, Vote
from service.operations.cancel_request import cancel_request
from service.operations.context import Context, NotFound, Refused
from service.operations.decide_request import Decided, decide_request
from service.operations.request_access import request_access
from service.operations.revoke_grant import revoke_grant
from service.store.models import AccessRequest, Approval, AuditEvent, Grant

if TYPE_CHECKING:
    from service.runtime import Runtime
    from service.settings import Settings

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])
STATE_KEY = "keyturn.api"
ID = "int(min=1, max=2147483647)"  # out of range is no route (404), never a database error
# Refusals because the request or grant has moved on: 409. Every other refusal: 403.
CONFLICTS = frozenset({Reason.NOT_PENDING, Reason.NOT_REVOCABLE, Reason.ALREADY_VOTED})
PAGE_SIZE, MAX_PAGE_SIZE = 50, 200


@dataclass(frozen=True)
class ApiState:
    ctx: Context
    tokens: Mapping[str, str]  # token -> Slack user id


class KeyturnApi(Api):
    """flask-smorest's Api with one JSON error shape under /api; other paths keep Flask's own errors."""

    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error: HTTPException) -> Any:
        if not request.path.startswith("/api/"):
            return error
        try:
            status = HTTPStatus(error.code or 500)
        except ValueError:
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        payload: dict[str, Any] = {"code": status.name.lower(), "status": status.phrase,
                                   "message": error.description or status.description}
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        data = getattr(error, "data", None) or {}
        if "message" in data:
            payload["message"] = data["message"]
        errors = data.get("errors", data.get("messages"))
        if errors:
            payload["errors"] = errors
        headers.update(data.get("headers") or {})
        return payload, status.value, headers


class KeyturnBlueprint(Blueprint):
    def _document_pagination_metadata(self, spec: Any, resp_doc: dict[str, Any]) -> None:
        """X-Pagination holds JSON text: documented as such (smorest documents an object-typed header)."""
        resp_doc.setdefault("headers", {})[self.PAGINATION_HEADER_NAME] = PAGINATION_HEADER


blp = KeyturnBlueprint("keyturn", __name__, url_prefix="/api/v1",
                       description="Access requests, grants and the audit log")


def register_api(app: Flask, settings: Settings, rt: Runtime) -> Api:
    """Mount /api/v1 and serve its OpenAPI document at /api/openapi.json; cap every route's request body
    (api/limits.py: /slack/events too, checked before Bolt reads it)."""
    limit_request_bodies(app)
    app.config.update(
        API_TITLE="Keyturn", API_VERSION="v1", OPENAPI_VERSION="3.0.3", OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": DESCRIPTION},
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.extensions[STATE_KEY] = ApiState(ctx=rt.ctx, tokens=dict(settings.api_tokens))
    known = set(rt.catalog.principals) | set(rt.catalog.admins)
    known.update(*(role.approvers for role in rt.catalog.roles.values()))
    for user in sorted(set(settings.api_tokens.values()) - known):
        log.warning("KEYTURN_API_TOKENS: %s is not in the catalogue; every write of theirs will be refused", user)
    api = KeyturnApi(app)
    api.register_blueprint(blp)
    return api


# ---- authentication and error mapping ---------------------------------------------------------------
def token_user(header: str, tokens: Mapping[str, str]) -> str | None:
    """The Slack user id of `Bearer <token>`; every known token is compared, in constant time each."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    given = token.encode("utf-8", "replace")
    user = None
    for known, who in tokens.items():
        if hmac.compare_digest(known.encode("utf-8"), given):
            user = who
    return user


def _state() -> ApiState:
    state: ApiState = current_app.extensions[STATE_KEY]
    return state


def _actor() -> str:
    user: str = g.keyturn_api_user
    return user


def _scope() -> Scope:
    """What the token's user may read (api/scope.py)."""
    return scope_of(_state().ctx, _actor())


@blp.before_request
def _authenticate() -> None:
    user = token_user(request.headers.get("Authorization", ""), _state().tokens)
    if user is None:
        abort(401, message="Send `Authorization: Bearer <token>` with a token Keyturn knows.",
              headers={"WWW-Authenticate": 'Bearer realm="keyturn"'})
    g.keyturn_api_user = user


@blp.errorhandler(Refused)
def _refused(exc: Refused) -> tuple[dict[str, str], int]:
    status = HTTPStatus.CONFLICT if exc.reason in CONFLICTS else HTTPStatus.FORBIDDEN
    return {"code": exc.reason.value, "status": status.phrase, "message": str(exc)}, status.value


@blp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> tuple[dict[str, str], int]:
    return {"code": "not_found", "status": HTTPStatus.NOT_FOUND.phrase, "message": str(exc)}, 404


ERRORS = {
    401: "No valid bearer token",
    403: "Refused by a rule; `code` is the reason (`forbidden`: the audit log is for admins only)",
    404: "No such request or grant, or none the token's user may read",
    409: "The request or grant has moved on (`not_pending`, `not_revocable`, `already_voted`)",
}


def documents(*codes: int) -> Callable[[F], F]:
    """Document 401 and the given error statuses, all with the error schema."""

    def apply(func: F) -> F:
        for code in (401, *codes):
            func = blp.alt_response(code, schema=ErrorSchema, description=ERRORS[code])(func)
        return func

    return apply


# ---- reading ----------------------------------------------------------------------------------------
def _where(stmt: Select[Any], model: Any, args: Mapping[str, Any]) -> Select[Any]:
    for key, value in args.items():
        column = getattr(model, "at" if key == "since" else key)
        stmt = stmt.where(column >= value if key == "since" else column == value)
    return stmt


def _page(session: Session, stmt: Select[Any], order: Any, params: Any) -> Sequence[Any]:
    """One page of `stmt`, and the total for the X-Pagination header; pages past the end are empty."""
    params.item_count = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    if params.first_item >= params.item_count:
        return []
    return session.scalars(stmt.order_by(order).offset(params.first_item).limit(params.page_size)).all()


def _requests_out(session: Session, rows: Sequence[AccessRequest]) -> list[dict[str, Any]]:
    """Requests with their votes and the grant made for them, in two queries for the whole page."""
    ids = [r.id for r in rows]
    votes: dict[int, list[Approval]] = defaultdict(list)
    grants: dict[int, int] = {}
    if ids:
        for vote in session.scalars(select(Approval).where(Approval.request_id.in_(ids)).order_by(Approval.id)):
            votes[vote.request_id].append(vote)
        grants = {rid: gid for rid, gid in session.execute(
            select(Grant.request_id, Grant.id).where(Grant.request_id.in_(ids))).tuples()}
    out = []
    for r in rows:
        row = {name: getattr(r, name) for name in (
            "id", "role_id", "requester", "state", "duration_seconds", "reason", "ticket", "created_at",
            "decided_at", "decided_by", "decision_note", "break_glass", "extends_grant_id")}
        row["break_glass"] = bool(row["break_glass"])
        row["duration"] = format_duration(timedelta(seconds=r.duration_seconds))
        row["grant_id"] = grants.get(r.id)
        row["approvals"] = votes[r.id]
        out.append(row)
    return out


def _request_out(request_id: int) -> dict[str, Any]:
    with _state().ctx.store() as session:
        row = session.get(AccessRequest, request_id)
        if row is None or not _scope().sees(row):
            raise NotFound(f"no request {request_id}")  # one the caller may not read does not exist for them
        return _requests_out(session, [row])[0]


def _grant_out(grant_id: int) -> Grant:
    with _state().ctx.store() as session:
        grant = session.get(Grant, grant_id)
        if grant is None or not _scope().sees(grant):
            raise NotFound(f"no grant {grant_id}")
        return grant


@blp.get("/requests")
@documents()
@blp.arguments(RequestFilterSchema, location="query", as_kwargs=True)
@blp.response(200, RequestSchema(many=True))
@blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
def list_requests(pagination_parameters: Any, **filters: Any) -> list[dict[str, Any]]:
    """List access requests, newest first: the caller's own, those of the roles they approve, all for an admin"""
    with _state().ctx.store() as session:
        stmt = _scope().where(_where(select(AccessRequest), AccessRequest, filters), AccessRequest)
        return _requests_out(session, _page(session, stmt, AccessRequest.id.desc(), pagination_parameters))


@blp.get(f"/requests/<{ID}:request_id>")
@documents(404)
@blp.response(200, RequestSchema)
def get_request(request_id: int) -> dict[str, Any]:
    """One access request, with its votes"""
    return _request_out(request_id)


@blp.get("/grants")
@documents()
@blp.arguments(GrantFilterSchema, location="query", as_kwargs=True)
@blp.response(200, GrantSchema(many=True))
@blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
def list_grants(pagination_parameters: Any, **filters: Any) -> Sequence[Grant]:
    """List grants, newest first: the caller's own, those of the roles they approve, all for an admin"""
    with _state().ctx.store() as session:
        stmt = _scope().where(_where(select(Grant), Grant, filters), Grant)
        return _page(session, stmt, Grant.id.desc(), pagination_parameters)


@blp.get(f"/grants/<{ID}:grant_id>")
@documents(404)
@blp.response(200, GrantSchema)
def get_grant(grant_id: int) -> Grant:
    """One grant"""
    return _grant_out(grant_id)


@blp.get("/audit")
@documents(403)
@blp.arguments(AuditFilterSchema, location="query", as_kwargs=True)
@blp.response(200, AuditEventSchema(many=True))
@blp.paginate(page_size=PAGE_SIZE, max_page_size=MAX_PAGE_SIZE)
def list_audit(pagination_parameters: Any, **filters: Any) -> Sequence[AuditEvent]:
    """The append-only audit log, oldest first (with IAM document hashes before/after a write); admins only"""
    if not _scope().admin:
        abort(403, message="The audit log is for Keyturn's admins only.")
    with _state().ctx.store() as session:
        return _page(session, _where(select(AuditEvent), AuditEvent, filters), AuditEvent.id.asc(),
                     pagination_parameters)


# ---- writing: the use cases, as the token's user -----------------------------------------------------
@blp.post("/requests")
@documents(403)
@blp.arguments(NewRequestSchema)
@blp.response(201, RequestSchema, headers={"Location": {"description": "the new request",
                                                         "schema": {"type": "string"}}})
def file_request(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """File an access request as the token's user (approved at once on an auto-approve role)"""
    filed = request_access(_state().ctx, requester=_actor(), role_id=body["role_id"], duration=body["duration"],
                           reason=body["reason"], ticket=body["ticket"])
    location = url_for(".get_request", request_id=filed.request_id)
    return _request_out(filed.request_id), 201, {"Location": location}


def _decide(request_id: int, vote: Vote, note: str | None) -> dict[str, Any]:
    decided: Decided = decide_request(_state().ctx, request_id=request_id, approver=_actor(), vote=vote, note=note)
    return {"outcome": decided.outcome.value, "approvals": decided.approvals, "break_glass": decided.break_glass,
            "grant_id": decided.grant_id, "request": _request_out(request_id)}


@blp.post(f"/requests/<{ID}:request_id>/approve")
@documents(403, 404, 409)
@blp.arguments(ApproveSchema, required=False)
@blp.response(200, DecisionSchema)
def approve_request(body: dict[str, Any], request_id: int) -> dict[str, Any]:
    """Approve as the token's user (an approver of the role; break-glass self-approval needs a note)"""
    return _decide(request_id, Vote.APPROVE, body.get("note"))


@blp.post(f"/requests/<{ID}:request_id>/deny")
@documents(403, 404, 409)
@blp.arguments(DenySchema, required=False)
@blp.response(200, DecisionSchema)
def deny_request(body: dict[str, Any], request_id: int) -> dict[str, Any]:
    """Deny as the token's user (an approver of the role)"""
    return _decide(request_id, Vote.DENY, body.get("reason"))


@blp.post(f"/requests/<{ID}:request_id>/cancel")
@documents(403, 404, 409)
@blp.response(200, RequestSchema)
def cancel(request_id: int) -> dict[str, Any]:
    """Withdraw a pending request (its requester or an admin)"""
    cancel_request(_state().ctx, request_id=request_id, actor_id=_actor())
    return _request_out(request_id)


@blp.post(f"/grants/<{ID}:grant_id>/revoke")
@documents(403, 404, 409)
@blp.arguments(RevokeSchema, required=False)
@blp.response(202, GrantSchema)
def revoke(body: dict[str, Any], grant_id: int) -> Grant:
    """End access early (its requester, an approver of the role or an admin). The grant is `ending` until
    its removal from IAM is verified, then `revoked`."""
    revoke_grant(_state().ctx, grant_id=grant_id, actor_id=_actor(), note=body.get("note"))
    return _grant_out(grant_id)
