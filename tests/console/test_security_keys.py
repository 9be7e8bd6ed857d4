"""Approvals confirmed with a security key, through the console with Flask's test client and a software key
(tests/support/soft_key.py) on SQLite and PostgreSQL: registering (a fresh sign-in), the vote cast only after
the assertion verifies (its credential in the audit), and every forged answer refused: a replay, an assertion
for another request, another person's key, a falling counter, another origin or RP id, no user verification.
The REST API and the CLI cannot approve such a role."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from service.store.models import AccessRequest, AuditEvent, Grant, SecurityKey
from tests.api import ALICE, BOB, CAROL, CATALOG, EVE, bearer
from tests.console import CONSOLE_URL, ConsoleWorld, csrf_of, make_console, sign_in
from tests.support.oidc_fake import TEAM_ID, FakeOidc
from tests.support.soft_key import SoftKey

CAROL_ARN = "  U0CAROL01: arn:aws:iam::123456789012:user/carol\n"
KEYED_CATALOG = CATALOG.replace("principals:\n", "principals:\n" + CAROL_ARN) + """
  - id: prod-keyed
    name: Prod (security key)
    account: moto
    role_name: ProdKeyed
    path: /keyturn/
    approvers: [U0BOB0001, U0CAROL01]
    require_security_key: true
  - id: glass-keyed
    name: Break glass (security key)
    account: moto
    role_name: GlassKeyed
    path: /keyturn/
    approvers: [U0ALICE01, U0BOB0001]
    allow_self_approval: true
    break_glass_requires_security_key: true
"""
RP_ID = "keyturn.test"


@pytest.fixture
def keyed(db_url: str, tmp_path: Path, oidc: FakeOidc) -> Iterator[ConsoleWorld]:
    from tests.api import TOKENS

    world = make_console(db_url, tmp_path, oidc, catalog_text=KEYED_CATALOG, api_tokens=dict(TOKENS))
    yield world
    world.close()


def signed_in(world: ConsoleWorld, user: str) -> tuple[Any, str]:
    client = world.client()
    assert sign_in(client, world.oidc, user).status_code == 302
    return client, csrf_of(client)


def register(client: Any, token: str, label: str = "yubikey") -> SoftKey:
    key = SoftKey(rp_id=RP_ID, origin=CONSOLE_URL)
    options = client.post("/console/keys/options", data={"csrf_token": token})
    assert options.status_code == 200, options.get_data(as_text=True)
    opts = options.get_json()
    assert opts["rp"]["id"] == RP_ID and opts["authenticatorSelection"]["userVerification"] == "required"
    resp = client.post("/console/keys", data={"csrf_token": token, "label": label, "credential": key.create(opts)})
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/console/keys")
    return key


def file(world: ConsoleWorld, user: str, role: str = "prod-keyed") -> int:
    client, token = signed_in(world, user)
    resp = client.post("/console/request", data={"csrf_token": token, "role": role, "duration": "1h",
                                                  "reason": "INC-9"})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    with world.runtime.ctx.store() as session:
        return max(session.scalars(select(AccessRequest.id)))


def options_for(client: Any, token: str, request_id: int) -> Any:
    return client.post(f"/console/requests/{request_id}/confirm/options", data={"csrf_token": token})


def confirm(client: Any, token: str, request_id: int, credential: str, note: str = "") -> Any:
    return client.post(f"/console/requests/{request_id}/confirm",
                       data={"csrf_token": token, "credential": credential, "note": note})


def rows(world: ConsoleWorld, model: Any) -> list[Any]:
    with world.runtime.ctx.store() as session:
        return list(session.scalars(select(model).order_by(model.id)))


def test_register_a_key_and_approve_with_it(keyed: ConsoleWorld) -> None:
    bob, token = signed_in(keyed, BOB)
    page = bob.get("/console/keys")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "security_key.js" in page.get_data(as_text=True) and "onclick" not in page.get_data(as_text=True)
    key = register(bob, token)
    [stored] = rows(keyed, SecurityKey)
    assert (stored.user_id, stored.label, stored.transports, stored.team_id) == (BOB, "yubikey", "usb", TEAM_ID)
    assert "yubikey" in bob.get("/console/keys").get_data(as_text=True)

    roles = bob.get("/console/request").get_data(as_text=True)
    assert "approved with a security key" in roles and "break-glass with a security key" in roles
    request_id = file(keyed, ALICE)
    queue = bob.get("/console/approvals").get_data(as_text=True)
    assert f"/console/requests/{request_id}/confirm" in queue and "Approve with security key" in queue
    # The console's own Approve button goes to the confirm page; it casts no vote.
    resp = bob.post(f"/console/requests/{request_id}/approve", data={"csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/requests/{request_id}/confirm")
    assert rows(keyed, Grant) == []
    assert bob.get(f"/console/requests/{request_id}/confirm").status_code == 200
    resp = confirm(bob, token, request_id, key.get(options_for(bob, token, request_id).get_json()))
    assert resp.status_code == 303, resp.get_data(as_text=True)
    [grant] = rows(keyed, Grant)
    assert (grant.requester, grant.role_id) == (ALICE, "prod-keyed")
    vote = next(e for e in rows(keyed, AuditEvent) if e.action == "vote.approve")
    assert (vote.actor, vote.detail["security_key"]) == (BOB, stored.credential_id)
    assert [k.sign_count for k in rows(keyed, SecurityKey)] == [1]

    resp = bob.post(f"/console/keys/{stored.id}/remove", data={"csrf_token": token})
    assert resp.status_code == 303 and rows(keyed, SecurityKey) == []
    assert {"security_key.registered", "security_key.removed"} <= {e.action for e in rows(keyed, AuditEvent)}


def test_forged_and_replayed_answers_are_refused(keyed: ConsoleWorld) -> None:
    bob, b_token = signed_in(keyed, BOB)
    key = register(bob, b_token)
    first, second = file(keyed, ALICE), file(keyed, EVE)

    def refused(credential: str, request_id: int = first, client: Any = bob, token: str = b_token) -> str:
        resp = confirm(client, token, request_id, credential)
        assert resp.status_code == 403, resp.get_data(as_text=True)
        return str(resp.get_data(as_text=True))

    opts = options_for(bob, b_token, first).get_json()
    assert "not for this page" in refused(key.get(opts), second)  # an assertion for another request
    assert "did not verify" in refused(key.get(opts, origin="https://evil.test"))  # another origin
    opts = options_for(bob, b_token, first).get_json()
    assert "did not verify" in refused(key.get(opts, rp_id="evil.test"))  # another RP id
    opts = options_for(bob, b_token, first).get_json()
    assert "did not verify" in refused(key.get(opts, verified=False))  # no user verification
    assert "No security-key answer" in refused("")
    assert "could not be read" in refused("{not json")
    assert rows(keyed, Grant) == []
    assert [k.sign_count for k in rows(keyed, SecurityKey)] == [0]
    # With no counter (0 and 0, as some passkeys), a fresh challenge still makes each answer good once.

    opts = options_for(bob, b_token, first).get_json()
    good = key.get(opts)
    assert confirm(bob, b_token, first, good).status_code == 303
    assert "used already" in refused(good)  # the same answer again: its challenge is gone
    [stored] = rows(keyed, SecurityKey)
    assert stored.sign_count == key.sign_count > 0 and stored.last_used_at is not None
    opts = options_for(bob, b_token, second).get_json()  # a counter that does not rise: a cloned key
    assert "did not verify" in refused(key.get(opts, count=key.sign_count), second)
    stale = options_for(bob, b_token, second).get_json()
    with keyed.runtime.ctx.store.begin() as session:  # a challenge older than its lifetime
        from service.store.models import SecurityKeyChallenge

        session.get(SecurityKeyChallenge, stale["challenge"]).created_at -= __import__("datetime").timedelta(
            minutes=10)
    assert "too old" in refused(key.get(stale), second)

    carol, c_token = signed_in(keyed, CAROL)  # an approver with no key of her own
    assert options_for(carol, c_token, second).status_code == 403
    assert carol.get(f"/console/requests/{second}/confirm").status_code == 403
    register(carol, c_token, "carol's")
    offered = options_for(carol, c_token, second).get_json()
    stolen = key.get(offered | {"allowCredentials": []})  # Bob's key answering Carol's challenge
    assert "not one you registered" in refused(stolen, second, carol, c_token)
    eve, e_token = signed_in(keyed, EVE)  # not an approver: the page and its options are not hers to see
    assert eve.get(f"/console/requests/{first}/confirm").status_code == 404
    assert options_for(eve, e_token, first).status_code == 404
    assert confirm(bob, "forged", second, key.get(options_for(bob, b_token, second).get_json())).status_code == 400
    assert len(rows(keyed, Grant)) == 1


def test_changing_keys_needs_a_fresh_sign_in_and_ones_own_key(keyed: ConsoleWorld) -> None:
    bob, token = signed_in(keyed, BOB)
    register(bob, token)
    [key] = rows(keyed, SecurityKey)
    alice, a_token = signed_in(keyed, ALICE)
    assert alice.post(f"/console/keys/{key.id}/remove", data={"csrf_token": a_token}).status_code == 404
    with bob.session_transaction("/console/") as session:
        session["signed_in_at"] = int(time.time()) - 6 * 60
    assert "Sign in again" in bob.get("/console/keys").get_data(as_text=True)
    resp = bob.post("/console/keys/options", data={"csrf_token": token})
    assert resp.status_code == 401 and resp.get_json()["signin"].endswith("/console/login?next=/console/keys")
    for resp in (bob.post(f"/console/keys/{key.id}/remove", data={"csrf_token": token}),
                 bob.post("/console/keys", data={"csrf_token": token, "credential": "{}"})):
        assert resp.status_code == 303 and "/console/login?next=" in resp.headers["Location"]
    assert len(rows(keyed, SecurityKey)) == 1
    assert bob.post("/console/keys/options", data={}).status_code == 400  # no CSRF token
    with bob.session_transaction("/console/") as session:
        session["signed_in_at"] = int(time.time())
    for _ in range(20):  # one person holds at most 20 open challenges (the registration's was used up)
        assert bob.post("/console/keys/options", data={"csrf_token": token}).status_code == 200
    resp = bob.post("/console/keys/options", data={"csrf_token": token})
    assert resp.status_code == 403 and "Too many" in resp.get_json()["error"]
    # Signing in again comes back to the keys page (and nowhere else).
    back = bob.get("/console/login?next=/console/keys")
    assert back.status_code == 302
    assert "/console/keys" in str(sign_in(bob, keyed.oidc, BOB).headers["Location"])
    bob.get("/console/login?next=//evil.test/console/")  # never to another site
    assert sign_in(bob, keyed.oidc, BOB).headers["Location"].endswith("/console/")


def test_break_glass_with_a_key(keyed: ConsoleWorld) -> None:
    alice, token = signed_in(keyed, ALICE)
    key = register(alice, token)
    request_id = file(keyed, ALICE, "glass-keyed")
    assert "needs a reason" in confirm(alice, token, request_id,
                                       key.get(options_for(alice, token, request_id).get_json())).get_data(True)
    resp = confirm(alice, token, request_id, key.get(options_for(alice, token, request_id).get_json()),
                   note="the pager at 3am")
    assert resp.status_code == 303
    [grant] = rows(keyed, Grant)
    assert grant.requester == ALICE
    approved = next(e for e in rows(keyed, AuditEvent) if e.action == "request.approved")
    assert approved.detail["break_glass"] and approved.detail["security_key"]


def test_rest_and_the_slack_button_cannot_approve_without_a_key(keyed: ConsoleWorld) -> None:
    from service.operations.context import RecordingDispatcher
    from service.slack.interactions import run_interaction

    request_id = file(keyed, ALICE)
    resp = keyed.client().post(f"/api/v1/requests/{request_id}/approve", headers=bearer(BOB), json={})
    assert resp.status_code == 403 and resp.get_json()["code"] == "security_key_required", resp.get_json()
    answers: list[tuple[str, bool]] = []
    run_interaction(keyed.runtime.ctx, "approve", {"request_id": request_id, "user": BOB, "team": TEAM_ID,
                                                   "token": "trigger-1"}, lambda t, r: answers.append((t, r)))
    [(text, replace)] = answers
    assert f"<{CONSOLE_URL}/console/requests/{request_id}/confirm|" in text and replace is False
    answers.clear()  # a non-approver is refused as before, and sent nowhere
    run_interaction(keyed.runtime.ctx, "approve", {"request_id": request_id, "user": EVE, "team": TEAM_ID},
                    lambda t, r: answers.append((t, r)))
    assert "not an approver" in answers[0][0] and "/confirm" not in answers[0][0]
    keyed.runtime.ctx.console_url = ""  # a catalogue that asks for keys on a deployment without the console
    answers.clear()
    run_interaction(keyed.runtime.ctx, "approve", {"request_id": request_id, "user": BOB, "team": TEAM_ID},
                    lambda t, r: answers.append((t, r)))
    assert "console is not set up" in answers[0][0]
    keyed.runtime.ctx.console_url = CONSOLE_URL
    assert rows(keyed, Grant) == [] and isinstance(keyed.dispatch, RecordingDispatcher)
    assert [r.state for r in rows(keyed, AccessRequest)] == ["pending"]
    assert resp.get_json()["message"].startswith("Approvals of this role")

    # Break-glass on a role whose self-approval needs a key: the button asks no reason in Slack, it queues the
    # click, and the worker answers with the confirm link (the reason is asked on the confirm page).
    from service.slack.listeners.approvals import approve_clicked

    glass = file(keyed, ALICE, "glass-keyed")
    opened: list[Any] = []
    context = {"keyturn": keyed.runtime.ctx, "actor_id": ALICE, "team_id": TEAM_ID,
               "after_ack": lambda *a, **k: opened.append((a, k))}
    approve_clicked(lambda *a, **k: None, {"actions": [{"value": str(glass)}], "trigger_id": "t-1",
                                           "response_url": None}, context, None)
    assert opened == [] and keyed.dispatch.interactions[-1][0] == "approve"
    answers.clear()
    run_interaction(keyed.runtime.ctx, "approve", keyed.dispatch.interactions[-1][1],
                    lambda t, r: answers.append((t, r)))
    assert f"/console/requests/{glass}/confirm|" in answers[0][0]
    assert [r.state for r in rows(keyed, AccessRequest)] == ["pending", "pending"]


def test_an_oversized_credential_id_is_refused_at_registration(keyed: ConsoleWorld) -> None:
    bob, token = signed_in(keyed, BOB)
    big = SoftKey(rp_id=RP_ID, origin=CONSOLE_URL, credential_id=bytes(range(256)) * 4 + b"x" * 100)  # > 1023
    opts = bob.post("/console/keys/options", data={"csrf_token": token}).get_json()
    resp = bob.post("/console/keys", data={"csrf_token": token, "label": "big", "credential": big.create(opts)},
                    follow_redirects=True)
    assert resp.status_code == 200 and "longer than WebAuthn allows" in resp.get_data(as_text=True)
    assert rows(keyed, SecurityKey) == []
    register(bob, token)  # a normal key still registers


def test_odd_transports_in_a_registration_are_dropped(keyed: ConsoleWorld) -> None:
    import json

    bob, token = signed_in(keyed, BOB)
    key = SoftKey(rp_id=RP_ID, origin=CONSOLE_URL)
    answer = json.loads(key.create(bob.post("/console/keys/options", data={"csrf_token": token}).get_json()))
    answer["response"]["transports"] = [{"usb": 1}, ["nfc"], 7, "internal", "x" * 500]
    resp = bob.post("/console/keys", data={"csrf_token": token, "label": "odd", "credential": json.dumps(answer)})
    assert resp.status_code == 303, resp.get_data(as_text=True)
    [stored] = rows(keyed, SecurityKey)
    assert stored.transports == "internal"
