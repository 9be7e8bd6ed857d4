"""The console in a real browser: Playwright drives Debian's chromium (Playwright's own browser download is not
reachable here) against the real app served on loopback and the fake OpenID provider. Sign in, request, approve
as a second person, see the grant, "I'm done", and the refusals a browser meets; screenshots go to
docs/screenshots/ for the README. `make test` installs chromium when it is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api import ALICE, BOB
from tests.console import make_console, served_on_loopback
from tests.support.oidc_fake import FakeOidc, SignIn

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright package is not installed (pip install -e '.[dev]')")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed (apt-get install chromium; `make test` does it)", allow_module_level=True)


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path, oidc: FakeOidc) -> Iterator[tuple[str, Any]]:
    with served_on_loopback(lambda base: make_console(sqlite_url, tmp_path, oidc, console_url=base)) as both:
        yield both


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def person(browser: Any, base: str, oidc: FakeOidc, user: str, *, phone: bool = False) -> Any:
    """A browser context of its own, signed in as `user` through the fake provider by clicking the button."""
    context = browser.new_context(viewport={"width": 390, "height": 844} if phone else {"width": 1100, "height": 800})
    page = context.new_page()
    page.goto(f"{base}/console/")
    assert page.url.endswith("/console/signin")
    oidc.next_user = SignIn(user_id=user, name={ALICE: "Alice", BOB: "Bob"}.get(user, user))
    page.get_by_role("link", name="Sign in with Slack").click()
    page.wait_for_url(f"{base}/console/")
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_sign_in_request_approve_and_im_done_in_chromium(served: tuple[str, Any], browser: Any,
                                                         oidc: FakeOidc) -> None:
    base, world = served
    signin = browser.new_page()
    signin.goto(f"{base}/console/signin")
    shot(signin, "console-signin")
    alice = person(browser, base, oidc, ALICE)
    cookie = next(c for c in alice.context.cookies() if c["name"] == "keyturn_console")
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Lax"

    alice.get_by_role("link", name="Request", exact=True).click()
    alice.get_by_role("radio", name="Prod admin").check()
    alice.get_by_label("Duration").fill("2h")
    alice.get_by_role("textbox", name="Reason", exact=True).fill("fixing INC-123: the payments queue is stuck")
    alice.get_by_label("Ticket").fill("INC-123")
    shot(alice, "console-request")
    alice.get_by_role("button", name="Request").click()
    assert "waiting for approval" in alice.content()

    bob = person(browser, base, oidc, BOB, phone=True)  # an approver on call, on a phone
    bob.get_by_role("link", name="Approvals").click()
    assert "the payments queue is stuck" in bob.content()
    shot(bob, "console-approvals-phone")
    bob.get_by_role("button", name="Approve").click()
    assert "approved" in bob.content()

    alice.goto(f"{base}/console/")
    assert "Open the AWS console (Switch Role)" in alice.content()
    alice.get_by_text("CLI profile for").click()
    shot(alice, "console-my-access")
    bob.goto(f"{base}/console/grants")
    shot(bob, "console-grants-phone")
    alice.get_by_role("button", name="I'm done").click()
    assert "Removing your access now" in alice.content()
    [grant] = _grants(world)
    assert (grant.state, grant.ended_by) == ("ending", ALICE)
    alice.goto(f"{base}/console/grants/{grant.id}")
    shot(alice, "console-grant-detail")


def test_a_browser_meets_the_refusals(served: tuple[str, Any], browser: Any, oidc: FakeOidc) -> None:
    base, world = served
    page = browser.new_page()
    oidc.next_user, oidc.tamper = SignIn(user_id=ALICE), "signature"
    page.goto(f"{base}/console/signin")
    page.get_by_role("link", name="Sign in with Slack").click()
    assert "Sign-in failed" in page.content()  # a tampered token
    oidc.tamper = None
    oidc.next_user = SignIn(user_id="U0STRANGER")
    page.goto(f"{base}/console/login")
    assert "does not know you" in page.content()  # the wrong person
    alice = person(browser, base, oidc, ALICE)
    alice.get_by_role("link", name="Request", exact=True).click()
    alice.locator("form[action$='/console/request'] input[name=csrf_token]").evaluate("e => e.value = 'forged'")
    alice.get_by_role("radio", name="Prod admin").check()
    alice.get_by_role("textbox", name="Reason", exact=True).fill("no token")
    alice.get_by_role("button", name="Request").click()
    assert "did not come from Keyturn" in alice.content()  # a missing / forged CSRF token
    with world.runtime.ctx.store() as session:
        from service.store.models import AccessRequest

        assert session.query(AccessRequest).count() == 0
    frame = browser.new_page()
    frame.set_content(f'<iframe src="{base}/console/"></iframe>')
    frame.wait_for_timeout(500)
    assert all(f.url in ("about:blank", "") or "chrome-error" in f.url for f in frame.frames[1:])  # no framing


def _grants(world: Any) -> list[Any]:
    from sqlalchemy import select

    from service.store.models import Grant

    with world.runtime.ctx.store() as session:
        return list(session.scalars(select(Grant)))
