"""The console's pages with Flask's test client on SQLite and PostgreSQL: the lifecycle through the same use
cases as Slack and REST, and each refusal (no CSRF token, another person's grant, a non-approver's vote, pages
for approvers and admins only, security headers)."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select

from service.store.models import AccessRequest, Approval, AuditEvent, Grant
from tests.api import ADMIN, ALICE, BOB, EVE
from tests.console import ConsoleWorld, csrf_of, sign_in


def signed_in(world: ConsoleWorld, user: str) -> tuple[Any, str]:
    client = world.client()
    assert sign_in(client, world.oidc, user).status_code == 302
    return client, csrf_of(client)


def file(client: Any, token: str, role: str = "prod-admin", reason: str = "fixing INC-123") -> Any:
    return client.post("/console/request", data={"csrf_token": token, "role": role, "duration": "2h",
                                                  "reason": reason, "ticket": "INC-123"})


def rows(world: ConsoleWorld, model: Any) -> list[Any]:
    with world.runtime.ctx.store() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_request_approve_see_the_grant_and_im_done(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    page = alice.get("/console/request").get_data(as_text=True)
    assert "Prod admin" in page and "at most 4h" in page and "break-glass" in page  # roles with their limits
    resp = file(alice, a_token)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    [request] = rows(console, AccessRequest)
    assert (request.requester, request.state, request.duration_seconds) == (ALICE, "pending", 7200)
    mine = alice.get("/console/").get_data(as_text=True)
    assert f"#{request.id} prod-admin" in mine and "waiting for approval" in mine

    bob, b_token = signed_in(console, BOB)
    queue = bob.get("/console/approvals").get_data(as_text=True)
    assert "fixing INC-123" in queue and f'/console/requests/{request.id}/approve' in queue
    resp = bob.post(f"/console/requests/{request.id}/approve", data={"csrf_token": b_token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/console/approvals")
    [grant] = rows(console, Grant)
    assert (grant.requester, grant.role_id) == (ALICE, "prod-admin")
    assert console.dispatch.syncs == [grant.target_key]

    mine = alice.get("/console/").get_data(as_text=True)
    assert "switchrole?account=123456789012" in mine and "roleName=keyturn%2FProdAdmin" in mine
    assert "[profile keyturn-prod-admin]" in mine
    assert "role_arn = arn:aws:iam::123456789012:role/keyturn/ProdAdmin" in mine
    assert re.search(r"<strong class=\"left\">1h5\dm</strong>", mine), mine
    assert "Request Prod admin again" in mine and "/console/request?role=prod-admin" in mine

    assert bob.get(f"/console/grants/{grant.id}").status_code == 200  # the approver sees it in detail
    detail = alice.get(f"/console/grants/{grant.id}").get_data(as_text=True)
    assert "request.filed" in detail and "vote.approve" in detail and "request.approved" in detail

    resp = alice.post(f"/console/grants/{grant.id}/done", data={"csrf_token": a_token})
    assert resp.status_code == 303
    [grant] = rows(console, Grant)
    assert (grant.state, grant.ended_by) == ("ending", ALICE)
    assert console.dispatch.urgent_syncs == [grant.target_key]


def test_a_form_without_the_sessions_csrf_token_changes_nothing(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    for data in ({}, {"csrf_token": "forged"}, {"csrf_token": a_token + "x"}):
        resp = alice.post("/console/request", data={"role": "prod-admin", "duration": "2h", "reason": "r", **data})
        assert resp.status_code == 400, resp.get_data(as_text=True)
    _eve, e_token = signed_in(console, EVE)
    assert file(alice, e_token).status_code == 400  # another session's token is no good either
    assert rows(console, AccessRequest) == []
    assert file(alice, a_token).status_code == 303
    [request] = rows(console, AccessRequest)
    bob, _ = signed_in(console, BOB)
    assert bob.post(f"/console/requests/{request.id}/approve", data={}).status_code == 400
    assert rows(console, Approval) == []
    assert console.client().post(f"/console/requests/{request.id}/cancel", data={"csrf_token": a_token}
                                 ).status_code == 401  # no session at all


def test_a_non_approver_cannot_approve_and_the_refusal_is_audited(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    file(alice, a_token)
    [request] = rows(console, AccessRequest)
    eve, e_token = signed_in(console, EVE)
    assert request.reason not in eve.get("/console/approvals").get_data(as_text=True)  # not her role's request
    resp = eve.post(f"/console/requests/{request.id}/approve", data={"csrf_token": e_token})
    assert resp.status_code == 403 and "not an approver" in resp.get_data(as_text=True)
    resp = alice.post(f"/console/requests/{request.id}/approve", data={"csrf_token": a_token})
    assert resp.status_code == 403  # nor the requester herself (prod-admin has no break-glass)
    assert [r.state for r in rows(console, AccessRequest)] == ["pending"]
    assert [(e.actor, e.detail["reason"]) for e in rows(console, AuditEvent) if e.action == "vote.refused"] == [
        (EVE, "not_an_approver"), (ALICE, "not_an_approver")]


def test_another_persons_grant_is_neither_shown_nor_ended(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    file(alice, a_token, role="read-only")  # auto-approved: a grant at once
    [grant] = rows(console, Grant)
    eve, e_token = signed_in(console, EVE)
    assert eve.get(f"/console/grants/{grant.id}").status_code == 404
    assert eve.get("/console/grants").status_code == 403  # the grants page: approvers and admins
    assert "read-only" not in eve.get("/console/").get_data(as_text=True)
    resp = eve.post(f"/console/grants/{grant.id}/done", data={"csrf_token": e_token})
    assert resp.status_code == 403
    resp = eve.post(f"/console/grants/{grant.id}/extend", data={"csrf_token": e_token, "duration": "1h",
                                                                  "reason": "mine now"})
    assert resp.status_code == 404
    assert [(g.state, g.ended_by) for g in rows(console, Grant)] == [(grant.state, None)]
    assert len(rows(console, AccessRequest)) == 1


def test_deny_with_a_reason_cancel_and_extend(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    file(alice, a_token)
    file(alice, a_token, reason="second")
    first, second = rows(console, AccessRequest)
    bob, b_token = signed_in(console, BOB)
    resp = bob.post(f"/console/requests/{first.id}/deny", data={"csrf_token": b_token, "reason": "not today"})
    assert resp.status_code == 303
    assert alice.post(f"/console/requests/{second.id}/cancel", data={"csrf_token": a_token}).status_code == 303
    assert [(r.state, r.decision_note) for r in rows(console, AccessRequest)] == [("denied", "not today"),
                                                                                 ("cancelled", None)]
    resp = bob.post(f"/console/requests/{first.id}/approve", data={"csrf_token": b_token})
    assert resp.status_code == 409  # moved on
    file(alice, a_token, role="read-only")
    [grant] = rows(console, Grant)
    resp = alice.post(f"/console/grants/{grant.id}/extend", data={"csrf_token": a_token, "duration": "30m",
                                                                    "reason": "more"})
    assert resp.status_code == 303
    extension = rows(console, AccessRequest)[-1]
    assert (extension.extends_grant_id, extension.duration_seconds) == (grant.id, 1800)
    resp = alice.post("/console/request", data={"csrf_token": a_token, "role": "prod-admin", "duration": "9h",
                                                "reason": "x"})
    assert resp.status_code == 403 and "at most 4h" in resp.get_data(as_text=True)  # the role's limit, as in Slack


def test_audit_is_for_admins_with_filters_chains_and_export(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    file(alice, a_token, role="read-only")
    assert alice.get("/console/audit").status_code == 403
    assert alice.get("/console/audit/export.json").status_code == 403
    admin, _ = signed_in(console, ADMIN)
    page = admin.get("/console/audit?action=request.filed").get_data(as_text=True)
    assert "request.filed" in page and "request.approved" not in page
    exported = json.loads(admin.get("/console/audit/export.json").get_data(as_text=True))
    assert {"request.filed", "request.approved", "console.signed_in"} <= {e["action"] for e in exported}
    csv_text = admin.get("/console/audit/export.csv?actor=" + ALICE).get_data(as_text=True)
    assert csv_text.startswith("id,at,actor,action") and "request.filed" in csv_text
    assert admin.get("/console/grants").status_code == 200


def test_every_page_carries_the_security_headers(console: ConsoleWorld) -> None:
    alice, _ = signed_in(console, ALICE)
    for path in ("/console/", "/console/request", "/console/signin", "/console/grants/999",
                 "/console/static/console.css"):
        resp = alice.get(path)
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp, path
        assert resp.headers["X-Frame-Options"] == "DENY" and resp.headers["X-Content-Type-Options"] == "nosniff"
    page = alice.get("/console/").get_data(as_text=True)
    assert "<script" not in page and " style=" not in page and "onclick" not in page


def test_user_text_is_escaped(console: ConsoleWorld) -> None:
    alice, a_token = signed_in(console, ALICE)
    file(alice, a_token, reason="<script>alert(1)</script>")
    bob, _ = signed_in(console, BOB)
    page = bob.get("/console/approvals").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    with console.runtime.ctx.store() as session:
        assert session.scalar(select(func.count()).select_from(AccessRequest)) == 1
