"""Who reads what through the REST API: their own, their roles' as an approver, all as an admin; the audit
log only as an admin; /metrics and the OpenAPI document carry no personal data. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.api import ADMIN, ALICE, BOB, CAROL, EVE, TOKENS, ApiWorld, bearer


def _file(c: Any, user: str, role_id: str, reason: str) -> dict[str, Any]:
    resp = c.post("/api/v1/requests", headers=bearer(user),
                  json={"role_id": role_id, "duration": "1h", "reason": reason, "ticket": f"T-{user}"})
    assert resp.status_code == 201, resp.json
    body: dict[str, Any] = resp.json
    return body


def _ids(c: Any, path: str, user: str, query: str = "") -> list[int]:
    resp = c.get(f"/api/v1/{path}?page_size=200{query}", headers=bearer(user))
    assert resp.status_code == 200, resp.json
    return sorted(row["id"] for row in resp.json)


def _seed(c: Any) -> dict[str, dict[str, Any]]:
    return {
        "alice_prod": _file(c, ALICE, "prod-admin", "alice's secret reason"),  # approvers: bob, carol
        "eve_ro": _file(c, EVE, "read-only", "eve's reason"),  # auto-approved: a grant, no approvers
        "bob_bg": _file(c, BOB, "break-glass", "bob's reason"),  # approvers: bob only
    }


def test_requests_and_grants_are_scoped_to_the_caller(world: ApiWorld) -> None:
    c = world.client
    rows = _seed(c)
    alice, eve, bob = rows["alice_prod"]["id"], rows["eve_ro"]["id"], rows["bob_bg"]["id"]
    eve_grant = rows["eve_ro"]["grant_id"]
    assert eve_grant

    # A requester sees only her own, even when she filters for someone else's.
    assert _ids(c, "requests", EVE) == [eve]
    assert _ids(c, "requests", EVE, f"&requester={ALICE}") == []
    assert _ids(c, "grants", EVE) == [eve_grant]
    assert _ids(c, "requests", ALICE) == [alice]
    assert _ids(c, "grants", ALICE) == []
    # An approver also sees the requests of the roles they approve, and no others.
    assert _ids(c, "requests", BOB) == sorted([alice, bob])
    assert _ids(c, "requests", CAROL) == [alice]
    assert _ids(c, "grants", BOB) == []
    # An admin sees everything.
    assert _ids(c, "requests", ADMIN) == sorted([alice, eve, bob])
    assert _ids(c, "grants", ADMIN) == [eve_grant]

    # One by id: what the caller may not read does not exist for them (404, no reason, no ARN).
    for user, url in [(EVE, f"/api/v1/requests/{alice}"), (CAROL, f"/api/v1/requests/{bob}"),
                      (ALICE, f"/api/v1/grants/{eve_grant}"), (BOB, f"/api/v1/grants/{eve_grant}")]:
        resp = c.get(url, headers=bearer(user))
        assert resp.status_code == 404, (user, url, resp.json)
        assert "reason" not in resp.json and "principal_arn" not in resp.json
    assert c.get(f"/api/v1/requests/{alice}", headers=bearer(CAROL)).json["reason"] == "alice's secret reason"
    assert c.get(f"/api/v1/grants/{eve_grant}", headers=bearer(EVE)).json["requester"] == EVE
    assert c.get(f"/api/v1/grants/{eve_grant}", headers=bearer(ADMIN)).status_code == 200


def test_the_audit_log_is_for_admins_only(world: ApiWorld) -> None:
    c = world.client
    _seed(c)
    for user in (ALICE, BOB, CAROL, EVE):
        resp = c.get("/api/v1/audit", headers=bearer(user))
        assert resp.status_code == 403, (user, resp.json)
        assert resp.json["code"] == "forbidden" and "admin" in resp.json["message"]
    events = c.get("/api/v1/audit?page_size=200", headers=bearer(ADMIN)).json
    assert {e["action"] for e in events} >= {"request.filed", "grant.created"}


def test_metrics_and_the_openapi_document_hold_no_personal_data(world: ApiWorld) -> None:
    c = world.client
    rows = _seed(c)
    personal = [ALICE, BOB, CAROL, EVE, ADMIN, *TOKENS, "secret reason", "T-U0", "user/alice", "user/eve",
                "123456789012", *(r["reason"] for r in rows.values())]
    metrics = c.get("/metrics")
    spec = c.get("/api/openapi.json")
    assert metrics.status_code == 200 and spec.status_code == 200
    assert "keyturn_requests" in metrics.text and "/api/v1/requests" in spec.text  # the real documents
    for text, what in [(metrics.text, "/metrics"), (spec.text, "openapi.json")]:
        leaked = [p for p in personal if p in text]
        assert leaked == [], f"{what} shows {leaked}"
