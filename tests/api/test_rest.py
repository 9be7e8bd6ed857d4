"""The REST API on SQLite and PostgreSQL: bearer tokens, the same rules as Slack, listings, errors, the spec."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from service.api.rest import token_user
from service.store.models import AccessRequest, AuditEvent
from tests.api import ADMIN, ALICE, BOB, CAROL, EVE, ApiWorld, bearer


def file(client: Any, user: str = ALICE, role_id: str = "prod-admin", **body: Any) -> Any:
    payload = {"role_id": role_id, "duration": "2h", "reason": "fixing INC-123", "ticket": "INC-123", **body}
    return client.post("/api/v1/requests", json=payload, headers=bearer(user))


def count(world: ApiWorld, model: Any) -> int:
    with world.runtime.ctx.store() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# ---- authentication ---------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "Bearer nope", "Bearer ", "Basic YWxpY2U6eA==", "alice-token-0123456789",
                                    "Bearer alice-token-012345678", "Bearer alice-token-0123456789x",
                                    "Bearer ålice"])
def test_missing_or_unknown_token_is_401_and_changes_nothing(world: ApiWorld, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    client = world.client
    for method, url, body in [("get", "/api/v1/requests", None), ("get", "/api/v1/audit", None),
                              ("post", "/api/v1/requests", {"role_id": "read-only"}),
                              ("post", "/api/v1/requests/1/approve", {})]:
        resp = getattr(client, method)(url, json=body, headers=headers)
        assert resp.status_code == 401, (url, resp.json)
        assert resp.json["code"] == "unauthorized"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert count(world, AccessRequest) == 0
    assert count(world, AuditEvent) == 0


def test_token_user_matches_whole_tokens_only() -> None:
    tokens = {"t-one": "U1", "t-two": "U2"}
    assert token_user("Bearer t-one", tokens) == "U1"
    assert token_user("bearer   t-two ", tokens) == "U2"
    assert token_user("Bearer t-on", tokens) is None
    assert token_user("Bearer t-one t-two", tokens) is None
    assert token_user("Token t-one", tokens) is None
    assert token_user("Bearer t-one", {}) is None


def test_the_actor_is_the_tokens_user_never_the_body(world: ApiWorld) -> None:
    resp = file(world.client, ALICE, requester=BOB)
    assert resp.status_code == 422 and "requester" in resp.json["errors"]["json"]
    resp = file(world.client, ALICE)
    assert resp.status_code == 201
    assert resp.json["requester"] == ALICE
    assert resp.headers["Location"].endswith(f"/api/v1/requests/{resp.json['id']}")


# ---- the lifecycle, with Slack's rules ---------------------------------------------------------------
def test_request_approve_revoke_with_the_same_rules_as_slack(world: ApiWorld) -> None:
    c = world.client
    filed = file(c, ALICE)
    assert filed.status_code == 201, filed.json
    rid = filed.json["id"]
    assert filed.json["state"] == "pending" and filed.json["duration"] == "2h"
    assert filed.json["duration_seconds"] == 7200 and filed.json["ticket"] == "INC-123"
    created = datetime.fromisoformat(filed.json["created_at"])
    assert filed.json["created_at"].endswith("+00:00") and created.utcoffset() == timedelta(0)

    # A non-approver (eve) and the requester herself: refused, with the core's reason.
    resp = c.post(f"/api/v1/requests/{rid}/approve", json={}, headers=bearer(EVE))
    assert resp.status_code == 403 and resp.json["code"] == "not_an_approver", resp.json
    assert resp.json["message"] == "You are not an approver for this role."
    resp = c.post(f"/api/v1/requests/{rid}/approve", headers=bearer(ALICE))
    assert resp.status_code == 403 and resp.json["code"] == "not_an_approver"
    assert c.get(f"/api/v1/requests/{rid}", headers=bearer(ALICE)).json["state"] == "pending"

    # An approver approves: approved, and a grant in provisioning.
    resp = c.post(f"/api/v1/requests/{rid}/approve", json={"note": "ok"}, headers=bearer(BOB))
    assert resp.status_code == 200, resp.json
    assert resp.json["outcome"] == "approved" and resp.json["approvals"] == 1 and not resp.json["break_glass"]
    gid = resp.json["grant_id"]
    assert resp.json["request"]["state"] == "approved" and resp.json["request"]["grant_id"] == gid
    assert resp.json["request"]["approvals"][0]["approver"] == BOB
    grant = c.get(f"/api/v1/grants/{gid}", headers=bearer(ALICE)).json
    assert grant["state"] == "provisioning" and grant["requester"] == ALICE and grant["request_id"] == rid
    assert grant["principal_arn"] == "arn:aws:iam::123456789012:user/alice"
    assert world.dispatch.syncs == [grant["target_key"]]

    # Too late to vote or cancel: 409.
    resp = c.post(f"/api/v1/requests/{rid}/approve", headers=bearer(CAROL))
    assert resp.status_code == 409 and resp.json["code"] == "not_pending"
    resp = c.post(f"/api/v1/requests/{rid}/deny", json={"reason": "no"}, headers=bearer(CAROL))
    assert resp.status_code == 409 and resp.json["code"] == "not_pending"
    resp = c.post(f"/api/v1/requests/{rid}/cancel", headers=bearer(ALICE))
    assert resp.status_code == 409 and resp.json["code"] == "not_pending"

    # Revoke: a stranger is refused; the requester ends it ("I'm done").
    resp = c.post(f"/api/v1/grants/{gid}/revoke", headers=bearer(EVE))
    assert resp.status_code == 403 and resp.json["code"] == "not_allowed_to_revoke"
    resp = c.post(f"/api/v1/grants/{gid}/revoke", json={"note": "done"}, headers=bearer(ALICE))
    assert resp.status_code == 202, resp.json
    assert resp.json["state"] == "ending" and resp.json["ended_by"] == ALICE and resp.json["end_reason"] == "revoked"
    resp = c.post(f"/api/v1/grants/{gid}/revoke", headers=bearer(ADMIN))
    assert resp.status_code == 409 and resp.json["code"] == "not_revocable"
    assert world.dispatch.syncs == [grant["target_key"]] * 2

    # The audit log has the refused votes (security events) and every transition.
    events = c.get(f"/api/v1/audit?request_id={rid}", headers=bearer(ADMIN)).json
    actions = [e["action"] for e in events]
    assert actions == ["request.filed", "vote.refused", "vote.refused", "vote.approve", "request.approved",
                       "grant.created", "grant.revoke_requested"]
    refused = c.get("/api/v1/audit?action=vote.refused", headers=bearer(ADMIN)).json
    assert [(e["actor"], e["detail"]["reason"]) for e in refused] == [(EVE, "not_an_approver"),
                                                                       (ALICE, "not_an_approver")]
    assert set(refused[0]) >= {"id", "at", "actor", "action", "request_id", "grant_id", "target_key",
                               "hash_before", "hash_after", "detail"}
    by_grant = c.get(f"/api/v1/audit?grant_id={gid}", headers=bearer(ADMIN)).json
    assert [e["action"] for e in by_grant] == ["grant.created", "grant.revoke_requested"]
    assert by_grant[1]["detail"] == {"note": "done"}


def test_self_approval_is_refused_and_break_glass_needs_a_reason(world: ApiWorld) -> None:
    c = world.client
    rid = file(c, BOB).json["id"]  # bob approves prod-admin, but not his own request
    resp = c.post(f"/api/v1/requests/{rid}/approve", json={"note": "trust me"}, headers=bearer(BOB))
    assert resp.status_code == 403 and resp.json["code"] == "self_approval"
    assert c.get(f"/api/v1/requests/{rid}", headers=bearer(BOB)).json["state"] == "pending"

    rid = file(c, BOB, role_id="break-glass").json["id"]
    resp = c.post(f"/api/v1/requests/{rid}/approve", headers=bearer(BOB))
    assert resp.status_code == 403 and resp.json["code"] == "break_glass_needs_reason"
    resp = c.post(f"/api/v1/requests/{rid}/approve", json={"note": "prod is down"}, headers=bearer(BOB))
    assert resp.status_code == 200 and resp.json["break_glass"] is True and resp.json["grant_id"]
    refused = c.get("/api/v1/audit?action=vote.refused", headers=bearer(ADMIN)).json
    assert [e["detail"]["reason"] for e in refused] == ["self_approval", "break_glass_needs_reason"]


def test_deny_cancel_and_auto_approve(world: ApiWorld) -> None:
    c = world.client
    rid = file(c, ALICE).json["id"]
    resp = c.post(f"/api/v1/requests/{rid}/deny", json={"reason": "not now"}, headers=bearer(CAROL))
    assert resp.status_code == 200 and resp.json["outcome"] == "denied"
    assert resp.json["request"]["state"] == "denied" and resp.json["request"]["decision_note"] == "not now"

    rid = file(c, ALICE).json["id"]
    resp = c.post(f"/api/v1/requests/{rid}/cancel", headers=bearer(EVE))
    assert resp.status_code == 403 and resp.json["code"] == "not_requester"
    resp = c.post(f"/api/v1/requests/{rid}/cancel", headers=bearer(ALICE))
    assert resp.status_code == 200 and resp.json["state"] == "cancelled"

    resp = file(c, EVE, role_id="read-only", duration=None, reason=None, ticket=None)
    assert resp.status_code == 201, resp.json
    assert resp.json["state"] == "approved" and resp.json["grant_id"] and resp.json["duration"] == "1h"


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"role_id": "nope"}, 403, "unknown_role"),
    ({"duration": "9h"}, 403, "duration_too_long"),
    ({"reason": "  "}, 403, "reason_required"),
    ({"duration": "2 hours"}, 422, "unprocessable_entity"),
    ({"duration": "0h"}, 403, "duration_not_positive"),
    ({"duration": "0h 0m"}, 403, "duration_not_positive"),
    ({"duration": "99999999999999w"}, 403, "duration_too_long"),
    ({"ticket": "x" * 257}, 422, "unprocessable_entity"),
    ({"reason": "a\x00b"}, 422, "unprocessable_entity"),
    ({"role_id": 7}, 422, "unprocessable_entity"),
])
def test_filing_refusals_and_validation(world: ApiWorld, body: dict[str, Any], status: int, code: str) -> None:
    resp = file(world.client, ALICE, **body)
    assert resp.status_code == status, resp.json
    assert resp.json["code"] == code
    assert count(world, AccessRequest) == 0


def test_someone_without_a_principal_cannot_file(world: ApiWorld) -> None:
    resp = file(world.client, CAROL)
    assert resp.status_code == 403 and resp.json["code"] == "no_principal"


def test_unknown_ids_are_404(world: ApiWorld) -> None:
    c, h = world.client, bearer(ADMIN)
    for method, url in [("get", "/api/v1/requests/999"), ("get", "/api/v1/grants/999"),
                        ("post", "/api/v1/requests/999/approve"), ("post", "/api/v1/requests/999/deny"),
                        ("post", "/api/v1/requests/999/cancel"), ("post", "/api/v1/grants/999/revoke"),
                        ("get", "/api/v1/requests/0"), ("get", "/api/v1/requests/99999999999")]:
        resp = getattr(c, method)(url, headers=h)
        assert resp.status_code == 404, url
        assert resp.json["code"] == "not_found"


# ---- listings ---------------------------------------------------------------------------------------
def _pagination(resp: Any) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(resp.headers["X-Pagination"])
    return meta


def test_listing_with_filters_and_pagination(world: ApiWorld) -> None:
    c, h = world.client, bearer(ADMIN)
    ids = [file(c, ALICE).json["id"] for _ in range(7)]
    bob_id = file(c, BOB).json["id"]
    c.post(f"/api/v1/requests/{ids[0]}/deny", headers=bearer(CAROL))

    seen: list[int] = []
    for page, size in [(1, 3), (2, 3), (3, 1)]:
        resp = c.get(f"/api/v1/requests?requester={ALICE}&page={page}&page_size=3", headers=h)
        assert resp.status_code == 200
        assert len(resp.json) == size
        meta = _pagination(resp)
        assert meta["total"] == 7 and meta["total_pages"] == 3 and meta["page"] == page
        assert meta.get("next_page") == (page + 1 if page < 3 else None)
        seen += [r["id"] for r in resp.json]
    assert seen == sorted(ids, reverse=True)  # newest first, no overlap, nothing missing
    assert c.get(f"/api/v1/requests?requester={ALICE}&page=4&page_size=3", headers=h).json == []

    def ids_of(query: str) -> list[int]:
        resp = c.get(f"/api/v1/requests?{query}", headers=h)
        assert resp.status_code == 200, resp.json
        return [r["id"] for r in resp.json]

    assert ids_of("state=denied") == [ids[0]]
    assert ids_of(f"state=pending&requester={BOB}") == [bob_id]
    assert ids_of("role_id=prod-admin&page_size=200") == [bob_id, *reversed(ids)]
    assert ids_of("role_id=read-only") == []
    assert _pagination(c.get("/api/v1/requests", headers=h))["total"] == 8
    for bad in ["page_size=201", "page_size=0", "page=0", "state=bogus", "requester=", "page=x"]:
        resp = c.get(f"/api/v1/requests?{bad}", headers=h)
        assert resp.status_code == 422, bad
        assert resp.json["code"] == "unprocessable_entity" and resp.json["errors"]


def test_grant_and_audit_listings(world: ApiWorld) -> None:
    c, h = world.client, bearer(ADMIN)
    before = datetime.now(UTC) - timedelta(seconds=1)
    grants = [file(c, u, role_id="read-only").json["grant_id"] for u in (ALICE, EVE, ALICE)]
    c.post(f"/api/v1/grants/{grants[0]}/revoke", headers=bearer(ALICE))

    resp = c.get("/api/v1/grants?page_size=2", headers=h)
    assert [g["id"] for g in resp.json] == [grants[2], grants[1]] and _pagination(resp)["total"] == 3
    assert [g["id"] for g in c.get("/api/v1/grants?state=ending", headers=h).json] == [grants[0]]
    assert [g["id"] for g in c.get(f"/api/v1/grants?requester={EVE}", headers=h).json] == [grants[1]]
    assert len(c.get("/api/v1/grants?role_id=read-only&state=provisioning", headers=h).json) == 2
    assert c.get("/api/v1/grants?state=pending", headers=h).status_code == 422

    events = c.get("/api/v1/audit?page_size=200", headers=h).json
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # oldest first
    assert all(e["at"].endswith("+00:00") for e in events)
    since = before.isoformat()
    assert len(c.get("/api/v1/audit", query_string={"since": since}, headers=h).json) == len(events)
    future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()  # no offset: UTC
    assert c.get("/api/v1/audit", query_string={"since": future}, headers=h).json == []
    created = c.get("/api/v1/audit?action=grant.created", headers=h).json
    assert [e["grant_id"] for e in created] == grants
    assert c.get(f"/api/v1/audit?actor={EVE}&action=request.filed", headers=h).json[0]["actor"] == EVE
    assert c.get("/api/v1/audit?since=yesterday", headers=h).status_code == 422


# ---- the spec and the rest of the app ----------------------------------------------------------------
def test_openapi_document_is_served_with_bearer_security(world: ApiWorld) -> None:
    resp = world.client.get("/api/openapi.json")  # no token needed for the document itself
    assert resp.status_code == 200
    spec = resp.json
    assert spec["openapi"] == "3.0.3"
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert spec["security"] == [{"bearerAuth": []}]
    ops = {(m.upper(), p) for p, item in spec["paths"].items() for m in item if m != "parameters"}
    assert ops == {
        ("GET", "/api/v1/requests"), ("POST", "/api/v1/requests"), ("GET", "/api/v1/requests/{request_id}"),
        ("POST", "/api/v1/requests/{request_id}/approve"), ("POST", "/api/v1/requests/{request_id}/deny"),
        ("POST", "/api/v1/requests/{request_id}/cancel"), ("GET", "/api/v1/grants"),
        ("GET", "/api/v1/grants/{grant_id}"), ("POST", "/api/v1/grants/{grant_id}/revoke"),
        ("GET", "/api/v1/audit"),
    }
    assert "X-Pagination" in spec["paths"]["/api/v1/requests"]["get"]["responses"]["200"]["headers"]
    assert "403" in spec["paths"]["/api/v1/requests/{request_id}/approve"]["post"]["responses"]
    assert spec["components"]["schemas"]["NewRequest"]["additionalProperties"] is False


def test_other_routes_keep_their_own_errors(world: ApiWorld) -> None:
    c = world.client
    assert c.get("/healthz").json == {"status": "ok"}
    resp = c.get("/no-such-page")
    assert resp.status_code == 404 and resp.mimetype == "text/html"
    resp = c.delete("/api/v1/requests", headers=bearer(ALICE))
    assert resp.status_code == 405 and resp.json["code"] == "method_not_allowed" and "GET" in resp.headers["Allow"]
