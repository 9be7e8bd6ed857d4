"""Sign in with Slack against a fake OpenID provider that signs real RS256 tokens: what is accepted, what is
refused (tampered signature, foreign key, unsigned, wrong nonce/issuer/audience, expired, wrong team,
unmapped user, replayed code, forged state), and the session cookie."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from service.settings import Settings, SettingsError, console_problems
from service.store.models import AuditEvent
from tests.api import ADMIN, ALICE, CAROL
from tests.console import (
    SESSION_SECRET,
    ConsoleWorld,
    console_settings,
    make_console,
    provider_answer,
    sign_in,
    start_sign_in,
)
from tests.support.oidc_fake import FakeOidc, SignIn


def test_sign_in_with_state_and_nonce_sets_a_short_secure_session(console: ConsoleWorld) -> None:
    client = console.client()
    console.oidc.next_user = SignIn(user_id=ALICE)
    assert client.get("/console/").headers["Location"].endswith("/console/signin")  # signed out: to sign-in
    authorize = start_sign_in(client)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(console.oidc.issuer + "/openid/connect/authorize")
    assert query["response_type"] == ["code"] and "openid" in query["scope"][0].split()
    assert len(query["state"][0]) >= 20 and len(query["nonce"][0]) >= 20
    assert query["redirect_uri"] == ["https://keyturn.test/console/callback"]
    resp = client.get(provider_answer(authorize))
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/console/")
    cookie = resp.headers["Set-Cookie"]
    assert "keyturn_console=" in cookie and "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Path=/console" in cookie and "Expires=" in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "My access" in page.get_data(as_text=True)
    assert console.oidc.token_calls[-1]["client_secret"] == console.oidc.client_secret
    with console.runtime.ctx.store() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "console.signed_in")).all()
        assert [(e.actor, e.detail["team"]) for e in events] == [(ALICE, "T0TEAM001")]


def test_an_approver_without_an_aws_identity_and_an_admin_may_sign_in(console: ConsoleWorld) -> None:
    for user in (CAROL, ADMIN):
        resp = sign_in(console.client(), console.oidc, user)
        assert resp.status_code == 302, resp.get_data(as_text=True)


@pytest.mark.parametrize("tamper", ["signature", "foreign_key", "none_alg", "nonce", "issuer", "audience", "expired",
                                    "no_id_token"])
def test_a_token_that_does_not_verify_is_refused(console: ConsoleWorld, tamper: str) -> None:
    client = console.client()
    resp = sign_in(client, console.oidc, ALICE, tamper=tamper)
    assert resp.status_code == 403, (tamper, resp.get_data(as_text=True)[:300])
    assert "Sign-in failed" in resp.get_data(as_text=True)
    assert client.get("/console/").status_code == 302  # still signed out


def test_another_workspace_is_refused(console: ConsoleWorld) -> None:
    client = console.client()
    resp = sign_in(client, console.oidc, ALICE, tamper="team")  # a correctly signed token naming T0OTHER01
    assert resp.status_code == 403 and "workspace" in resp.get_data(as_text=True)
    resp = sign_in(client, console.oidc, ALICE, team="T0NOTOURS")
    assert resp.status_code == 403
    assert client.get("/console/").status_code == 302


def test_an_enterprise_grid_org_admits_its_other_workspaces(sqlite_url: str, tmp_path: Path, oidc: FakeOidc) -> None:
    world = make_console(sqlite_url, tmp_path, oidc, slack_team_ids=(), slack_enterprise_id="E0ORG0001")
    try:
        client = world.client()
        oidc.next_user = SignIn(user_id=ALICE, team_id="T0SISTER1", enterprise_id="E0ORG0001")
        assert client.get(provider_answer(start_sign_in(client))).status_code == 302
        oidc.next_user = SignIn(user_id=ALICE, team_id="T0SISTER1", enterprise_id="E0OTHER01")
        assert world.client().get(provider_answer(start_sign_in(world.client()))).status_code == 403
    finally:
        world.close()


def test_a_person_the_catalogue_does_not_know_is_refused(console: ConsoleWorld) -> None:
    client = console.client()
    resp = sign_in(client, console.oidc, "U0STRANGER")
    assert resp.status_code == 403 and "does not know you" in resp.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_state_is_checked_and_a_code_is_good_once(console_sqlite: ConsoleWorld) -> None:
    world = console_sqlite
    world.oidc.next_user = SignIn(user_id=ALICE)
    client = world.client()
    callback = provider_answer(start_sign_in(client))
    forged = callback.replace("state=", "state=x")
    assert client.get(forged).status_code == 403  # a state this browser was never given
    other = world.client()  # another browser replaying the callback: it has no such state
    assert other.get(callback).status_code == 403
    assert other.get("/console/").status_code == 302
    first = world.client()
    callback = provider_answer(start_sign_in(first))
    assert first.get(callback).status_code == 302
    assert first.get(callback).status_code == 403  # the state is used up


def test_the_session_ends_after_its_lifetime_and_at_sign_out(console_sqlite: ConsoleWorld) -> None:
    world = console_sqlite
    client = world.client()
    assert sign_in(client, world.oidc, ALICE).status_code == 302
    with client.session_transaction() as session:
        session["signed_in_at"] = int(time.time()) - 8 * 3600 - 1
    assert client.get("/console/").headers["Location"].endswith("/console/signin")
    assert sign_in(client, world.oidc, ALICE).status_code == 302
    page = client.get("/console/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/console/logout", data={}).status_code == 400  # sign-out is a form too: CSRF
    assert client.post("/console/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/console/").status_code == 302


def test_settings_refuse_a_console_with_missing_or_placeholder_secrets(tmp_path: Path, oidc: FakeOidc) -> None:
    good = console_settings("sqlite://", tmp_path / "c.yaml", oidc)
    assert console_problems(good) == []
    for change, name in [({"oidc_client_secret": ""}, "SLACK_CLIENT_SECRET"),
                         ({"oidc_client_secret": "replace-me-replace-me-replace-me-xx"}, "SLACK_CLIENT_SECRET"),
                         ({"console_session_secret": "short"}, "KEYTURN_CONSOLE_SESSION_SECRET"),
                         ({"oidc_client_id": ""}, "SLACK_CLIENT_ID"),
                         ({"console_url": "http://keyturn.example.org"}, "KEYTURN_CONSOLE_URL"),
                         ({"slack_team_ids": ()}, "KEYTURN_SLACK_TEAM_ID")]:
        problems = console_problems(good.with_(**change))
        assert any(p.startswith(name) for p in problems), (change, problems)
    env = {"KEYTURN_CONSOLE_URL": "https://keyturn.test/", "SLACK_CLIENT_ID": "1.2",
           "SLACK_CLIENT_SECRET": "x" * 40, "KEYTURN_CONSOLE_SESSION_SECRET": SESSION_SECRET,
           "KEYTURN_CONSOLE_SESSION_LIFETIME": "2h"}
    read = Settings.from_env(env)
    assert read.console_url == "https://keyturn.test" and read.console_session_lifetime.total_seconds() == 7200
    assert SESSION_SECRET not in repr(read)


def test_the_web_refuses_to_start_a_console_without_its_secrets(sqlite_url: str, tmp_path: Path,
                                                                 oidc: FakeOidc) -> None:
    with pytest.raises(SettingsError, match="KEYTURN_CONSOLE_SESSION_SECRET"):
        make_console(sqlite_url, tmp_path, oidc, console_session_secret="changeme-changeme-changeme-changeme")
