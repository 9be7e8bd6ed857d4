"""Approvals confirmed with a security key in a real browser: Debian's chromium with Chrome's virtual
authenticator (DevTools WebAuthn domain: CTAP2 over USB, with user verification). Sign in, register a key
(a fresh sign-in), Alice requests a role that asks for a key, Bob approves it with his key on the confirm page
(the page's one static script runs navigator.credentials under the console's CSP), and Alice sees the grant;
and the refusals: an approver with no key, someone who does not approve the role, a tampered assertion and a
missing CSRF token. The confirm page's screenshot goes to docs/screenshots/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api import ALICE, BOB, CAROL, EVE
from tests.console import make_console, served_on_loopback
from tests.console.test_browser import _grants, browser, person, shot  # noqa: F401  (browser: a fixture)
from tests.console.test_security_keys import KEYED_CATALOG
from tests.support.oidc_fake import FakeOidc

# The assertion's signature altered after the key answered, just before the form goes.
TAMPER = """f => { const send = f.submit.bind(f); f.submit = () => {
  const field = f.querySelector('input[name=credential]'); const answer = JSON.parse(field.value);
  const s = answer.response.signature;
  answer.response.signature = s.slice(0, 20) + (s[20] === 'A' ? 'B' : 'A') + s.slice(21);
  field.value = JSON.stringify(answer); send(); }; }"""


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path, oidc: FakeOidc) -> Iterator[tuple[str, Any]]:
    # http://localhost: a secure context for WebAuthn, and the RP id `localhost`
    with served_on_loopback(lambda base: make_console(sqlite_url, tmp_path, oidc, console_url=base,
                                                      catalog_text=KEYED_CATALOG)) as both:
        yield both


def with_key(page: Any) -> Any:
    """A virtual security key plugged into this page: CTAP2 over USB, verifying its user (a PIN typed)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "usb", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    return cdp


def test_approve_with_a_security_key_in_chromium(served: tuple[str, Any], browser: Any, oidc: FakeOidc) -> None:  # noqa: F811
    base, world = served
    bob = person(browser, base, oidc, BOB, phone=True)  # the approver on call, just signed in
    with_key(bob)
    bob.get_by_role("link", name="Security keys").click()
    bob.get_by_label("Name").fill("Bob's YubiKey")
    bob.get_by_role("button", name="Add a security key").click()
    bob.wait_for_url(f"{base}/console/keys")
    bob.get_by_text("Security key “Bob's YubiKey” added.").wait_for()
    assert "Bob's YubiKey" in bob.locator(".key-label").all_inner_texts()
    shot(bob, "console-security-keys-phone")

    alice = person(browser, base, oidc, ALICE)
    alice.get_by_role("link", name="Request", exact=True).click()
    alice.get_by_role("radio", name="Prod (security key)").check()
    alice.get_by_role("textbox", name="Reason", exact=True).fill("INC-77: rotate the leaked token")
    alice.get_by_role("button", name="Request").click()
    assert "waiting for approval" in alice.content()
    confirm_url = f"{base}/console/requests/1/confirm"

    carol = person(browser, base, oidc, CAROL)  # an approver with no key registered
    carol.goto(confirm_url)
    assert "You have no security key registered" in carol.content()
    assert carol.get_by_role("button", name="Approve with security key").count() == 0
    eve = person(browser, base, oidc, EVE)  # does not approve this role
    eve.goto(confirm_url)
    assert "nothing you may see" in eve.content()

    bob.get_by_role("link", name="Approvals").click()
    bob.get_by_role("link", name="Approve with security key").click()
    bob.wait_for_url(confirm_url)
    assert "INC-77: rotate the leaked token" in bob.content()
    shot(bob, "console-confirm-security-key-phone")

    form = bob.locator("#confirm-form")
    form.locator("input[name=csrf_token]").evaluate("e => e.value = 'forged'")  # a missing / forged CSRF token
    bob.get_by_role("button", name="Approve with security key").click()
    bob.get_by_role("alert").filter(has_text="Keyturn refused (400)").wait_for()
    assert _grants(world) == []

    bob.goto(confirm_url)
    bob.locator("#confirm-form").evaluate(TAMPER)  # a tampered assertion
    bob.get_by_role("button", name="Approve with security key").click()
    bob.get_by_text("did not verify").wait_for()
    assert _grants(world) == []

    bob.goto(confirm_url)
    bob.get_by_role("button", name="Approve with security key").click()
    bob.wait_for_url(f"{base}/console/approvals")
    assert "approved (confirmed with your security key)" in bob.content()
    [grant] = _grants(world)
    assert (grant.requester, grant.role_id) == (ALICE, "prod-keyed")

    alice.goto(f"{base}/console/")
    assert "Prod (security key)" in alice.locator("#grant-1").inner_text()
    assert "Open the AWS console (Switch Role)" in alice.content()
