"""Marshmallow schemas of the REST API: what it reads (query strings, bodies) and what it returns,
and the prose of its OpenAPI document.

Every constraint is a real validator (`validate=`), so the OpenAPI document and the server agree.
Text is bounded by the columns it lands in and may not hold control characters (PostgreSQL refuses NUL).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from service.core.durations import DurationError, DurationTooLong, parse_duration
from service.core.rules import Outcome
from service.core.states import GrantState, RequestState
from service.store.limits import DURATION_MAX, NOTE_MAX, REASON_MAX, TICKET_MAX

MAX_ID = 2**31 - 1  # the databases' INTEGER
LINE = r"^[^\x00-\x1f\x7f]*$"  # one line: no control characters
TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"  # free text: tabs and line breaks allowed
DURATION = r"^ *([0-9]+ *[smhdwSMHDW] *)+$"


def _no_surrogates(value: str) -> bool:
    """Lone surrogates (possible through JSON escapes) cannot be stored as UTF-8."""
    return not any("\ud800" <= ch <= "\udfff" for ch in value)


def line(max_len: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=[validate.Length(min=1, max=max_len), validate.Regexp(LINE), _no_surrogates],
                         **kwargs)


def text(max_len: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=[validate.Length(max=max_len), validate.Regexp(TEXT), _no_surrogates],
                         **kwargs)


def ident(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_ID), **kwargs)


class UtcDateTime(fields.AwareDateTime):
    """ISO 8601 in; a time without an offset is taken as UTC. Converted to UTC."""

    def __init__(self, **kwargs: Any):
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(UTC)
        except OverflowError as exc:
            raise ValidationError("Out of range.") from exc


# ---- query strings ----------------------------------------------------------------------------------
class RequestFilterSchema(Schema):
    state = fields.String(validate=validate.OneOf([s.value for s in RequestState]))
    role_id = line(64)
    requester = line(64, metadata={"description": "Slack user id of the requester"})


class GrantFilterSchema(Schema):
    state = fields.String(validate=validate.OneOf([s.value for s in GrantState]))
    role_id = line(64)
    requester = line(64, metadata={"description": "Slack user id of the requester"})


class AuditFilterSchema(Schema):
    since = UtcDateTime(metadata={"description": "only events at or after this time (ISO 8601; UTC if no offset)"})
    action = line(48, metadata={"description": "e.g. request.filed, vote.refused, grant.revoke_requested"})
    actor = line(64)
    request_id = ident()
    grant_id = ident()


# ---- bodies -----------------------------------------------------------------------------------------
class NewRequestSchema(Schema):
    role_id = line(64, required=True, metadata={"description": "a role id from the catalogue"})
    duration = fields.String(
        load_default=None,
        validate=[validate.Length(min=1, max=DURATION_MAX), validate.Regexp(DURATION)],
        metadata={"description": "e.g. 30m, 2h, 1d, 1h30m; the role's default when left out"},
    )
    reason = text(REASON_MAX, load_default=None)
    ticket = fields.String(load_default=None, validate=[validate.Length(max=TICKET_MAX), validate.Regexp(LINE),
                                                        _no_surrogates], metadata={"description": "one line"})

    @post_load
    def _duration(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        """A well-formed duration always loads; the core judges it (zero: duration_not_positive,
        beyond what a timedelta holds: duration_too_long), exactly as for Slack."""
        raw = data.get("duration")
        if raw is not None:
            try:
                data["duration"] = parse_duration(raw)
            except DurationTooLong:
                data["duration"] = timedelta.max
            except DurationError:
                data["duration"] = timedelta(0)  # the pattern matched, so only "zero" is left
        return data


class ApproveSchema(Schema):
    note = text(NOTE_MAX, load_default=None, metadata={"description": "a comment; required for break-glass"})


class DenySchema(Schema):
    reason = text(NOTE_MAX, load_default=None)


class RevokeSchema(Schema):
    note = text(NOTE_MAX, load_default=None)


# ---- responses --------------------------------------------------------------------------------------
def _when(**kwargs: Any) -> fields.DateTime:
    return fields.DateTime(format="iso", **kwargs)


class ApprovalSchema(Schema):
    approver = fields.String(required=True)
    vote = fields.String(required=True, validate=validate.OneOf(["approve", "deny"]))
    note = fields.String(allow_none=True)
    created_at = _when(required=True)


class RequestSchema(Schema):
    id = fields.Integer(required=True)
    role_id = fields.String(required=True)
    requester = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf([s.value for s in RequestState]))
    duration = fields.String(required=True, metadata={"description": "e.g. 2h"})
    duration_seconds = fields.Integer(required=True)
    reason = fields.String(allow_none=True)
    ticket = fields.String(allow_none=True)
    created_at = _when(required=True)
    decided_at = _when(allow_none=True)
    decided_by = fields.String(allow_none=True)
    decision_note = fields.String(allow_none=True)
    break_glass = fields.Boolean(required=True)
    extends_grant_id = fields.Integer(allow_none=True)
    grant_id = fields.Integer(allow_none=True, metadata={"description": "the grant made when it was approved"})
    approvals = fields.List(fields.Nested(ApprovalSchema), required=True)


class GrantSchema(Schema):
    id = fields.Integer(required=True)
    request_id = fields.Integer(required=True)
    role_id = fields.String(required=True)
    requester = fields.String(required=True)
    principal_arn = fields.String(required=True)
    target_key = fields.String(required=True)
    state = fields.String(required=True, validate=validate.OneOf([s.value for s in GrantState]))
    require_mfa = fields.Boolean(required=True)
    session_name = fields.String(allow_none=True)
    starts_at = _when(required=True)
    expires_at = _when(required=True)
    end_reason = fields.String(allow_none=True)
    end_requested_at = _when(allow_none=True)
    ended_at = _when(allow_none=True)
    ended_by = fields.String(allow_none=True)
    failure_reason = fields.String(allow_none=True)


class AuditEventSchema(Schema):
    id = fields.Integer(required=True)
    at = _when(required=True)
    actor = fields.String(required=True)
    action = fields.String(required=True)
    request_id = fields.Integer(allow_none=True)
    grant_id = fields.Integer(allow_none=True)
    target_key = fields.String(allow_none=True)
    hash_before = fields.String(allow_none=True, metadata={"description": "SHA-256 of the IAM document before"})
    hash_after = fields.String(allow_none=True, metadata={"description": "SHA-256 of the IAM document after"})
    detail = fields.Dict(allow_none=True)


class DecisionSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf([o.value for o in Outcome if o.value != "refused"]),
                            metadata={"description": "recorded: counted, quorum not reached yet"})
    approvals = fields.Integer(required=True, metadata={"description": "distinct approvals so far"})
    break_glass = fields.Boolean(required=True)
    grant_id = fields.Integer(allow_none=True)
    request = fields.Nested(RequestSchema, required=True)


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={
        "description": "a refusal reason (e.g. not_an_approver) or the HTTP status in snake case (e.g. not_found)"})
    status = fields.String(required=True, metadata={"description": "the HTTP status phrase"})
    message = fields.String(metadata={"description": "fit to show a person"})
    errors = fields.Dict(metadata={"description": "validation errors by location and field"})


# ---- the document's prose and the pagination header ---------------------------------------------------
DESCRIPTION = """Access requests, grants and the audit log of Keyturn, for clients that are not Slack.
The rules are the ones Slack applies, enforced in the same place.

**Authentication.** `Authorization: Bearer <token>`. Each token maps to a Slack user id
(`KEYTURN_API_TOKENS=U123:token,...`); that user is the actor of every write. A missing or unknown
token is `401`.

**What you can read.** Your own requests and grants, and those of the roles you approve; an admin reads
everything. A request or grant you may not read is `404`, as if it did not exist. The audit log is for
admins only (`403 forbidden` for anyone else).

**Pagination.** List endpoints take `page` (from 1) and `page_size` (default 50, at most 200) and
return a JSON array; the `X-Pagination` response header holds JSON metadata:
`{"total", "total_pages", "first_page", "last_page", "page", "previous_page", "next_page"}`.
Requests and grants are listed newest first, audit events oldest first.

**Errors** are JSON `{"code", "status", "message", "errors"?}`:

- `401 unauthorized`: no valid bearer token.
- `403` with the refusal reason as `code`, when a rule says no: `not_an_approver`, `self_approval`,
  `break_glass_needs_reason`, `not_requester`, `not_allowed_to_revoke`, `unknown_role`, `no_principal`,
  `duration_too_long`, `duration_not_positive`, `reason_required`, `unsupported_principal`.
- `403 forbidden`: the audit log, for someone who is not an admin.
- `404 not_found`: no such request or grant (or none you may read).
- `409` when the request or grant has moved on: `not_pending`, `not_revocable`, `already_voted`.
- `422 unprocessable_entity`: invalid query or body; `errors` says where.

**Times** are ISO 8601 in UTC with an offset (`2026-01-02T03:04:05+00:00`).
"""

PAGINATION_HEADER = {
    "description": "Pagination metadata, as JSON",
    "content": {"application/json": {"schema": {"type": "object", "properties": {
        name: {"type": "integer"} for name in (
            "total", "total_pages", "first_page", "last_page", "page", "previous_page", "next_page")}}}},
}
