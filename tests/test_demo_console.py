"""`make demo KEEP=1` as a newcomer uses it: the timeline, then the console on loopback; sign in through the demo's
provider as alice, request prod-admin, sign in as bob and approve, see the grant active (the demo's worker put it
in moto's IAM), I'm done; the provider refuses a foreign redirect and a replayed code; Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from html import unescape
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import requests

pytestmark = pytest.mark.slow


class Browser:
    """Enough of a browser for these pages: follows redirects and keeps the console's cookie. (requests drops a
    Secure cookie over http; a browser keeps it on loopback, where the console allows http.)"""

    def __init__(self, base: str) -> None:
        self.base, self.cookies = base, SimpleCookie()
        self.last_callback = self.provider = ""

    def go(self, method: str, url: str, *, follow: bool = True, **kwargs: Any) -> requests.Response:
        for _ in range(10):
            mine = url.startswith(self.base)
            headers = {"Cookie": "; ".join(f"{k}={m.value}" for k, m in self.cookies.items())} if mine else {}
            response = requests.request(method, url, headers=headers, allow_redirects=False, timeout=10, **kwargs)
            for line in response.raw.headers.getlist("Set-Cookie") if mine else []:
                jar: SimpleCookie = SimpleCookie(line)
                for name, morsel in jar.items():
                    gone = morsel["max-age"] == "0" or "1970" in morsel["expires"]
                    self.cookies.pop(name, None) if gone else self.cookies.__setitem__(name, morsel)
            if not follow or response.status_code not in (301, 302, 303):
                return response
            url, method, kwargs = urljoin(url, response.headers["Location"]), "GET", {}
        raise AssertionError("too many redirects")


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def sign_in(base: str, user: str) -> Browser:
    b = Browser(base)
    to_provider = b.go("GET", f"{base}/console/login", follow=False)
    assert to_provider.status_code == 302
    picker = b.go("GET", to_provider.headers["Location"])
    assert picker.status_code == 200 and f'value="{user}"' in picker.text
    hidden = dict(re.findall(r'name="(state|nonce)" value="([^"]*)"', picker.text))
    provider = urlsplit(to_provider.headers["Location"])
    b.provider = f"{provider.scheme}://{provider.netloc}"
    chosen = b.go("POST", f"{b.provider}/openid/connect/authorize", follow=False,
                  data={**{k: unescape(v) for k, v in hidden.items()}, "user": user})
    assert chosen.status_code == 303 and chosen.headers["Location"].startswith(f"{base}/console/callback?")
    b.last_callback = chosen.headers["Location"]
    home = b.go("GET", b.last_callback)
    assert home.status_code == 200 and urlsplit(home.url).path == "/console/", home.text[:2000]
    return b


def test_demo_keep_serves_the_console_through_the_lifecycle(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYTURN_", "DATABASE_URL", "REDIS"))}
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "demo", "--short", "--keep"], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    try:
        assert proc.stdout is not None
        base = ""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not base:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            found = re.search(r"console: (http://127\.0\.0\.1:\d+)/console/", line)
            base = found.group(1) if found else ""
        assert base, "".join(out)[-3000:]
        assert any("demo finished: every step checked out" in line for line in out)

        alice = sign_in(base, "U0ALICE01")
        # The provider sends codes to this console only, and a code is good once.
        replay = alice.go("GET", alice.last_callback)
        assert replay.status_code == 403
        alice = sign_in(base, "U0ALICE01")
        foreign = requests.get(f"{alice.provider}/openid/connect/authorize", params={
            "client_id": "x", "redirect_uri": "https://evil.example/cb", "response_type": "code"}, timeout=10)
        assert foreign.status_code == 400 and "did not come from" in foreign.text

        form = alice.go("GET", f"{base}/console/request").text
        filed = alice.go("POST", f"{base}/console/request", data={
            "csrf_token": _csrf(form), "role": "prod-admin", "duration": "30m", "reason": "demo INC-1", "ticket": ""})
        assert filed.status_code == 200 and "waiting for approval" in filed.text, filed.text[-3000:]

        bob = sign_in(base, "U0BOB0001")
        approvals = bob.go("GET", f"{base}/console/approvals").text
        found = re.search(r'action="(/console/requests/(\d+)/approve)"', approvals)
        assert found, approvals[:3000]
        voted = bob.go("POST", f"{base}{found.group(1)}", data={"csrf_token": _csrf(approvals), "note": ""})
        assert voted.status_code == 200

        # The demo's worker writes the trust statement; alice's page then shows the live grant with its link.
        deadline = time.monotonic() + 30
        mine = ""
        while time.monotonic() < deadline:
            mine = alice.go("GET", f"{base}/console/").text
            if "signin.aws.amazon.com/switchrole" in mine:
                break
            time.sleep(0.5)
        assert "signin.aws.amazon.com/switchrole" in mine, mine[:3000]
        done = re.search(r'action="(/console/grants/\d+/done)"', mine)
        assert done
        ended = alice.go("POST", f"{base}{done.group(1)}", data={"csrf_token": _csrf(mine)})
        assert ended.status_code == 200
        grant_page, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline and not re.search(r"pill revoked", grant_page):  # ending, then revoked
            time.sleep(0.3)
            grant_page = alice.go("GET", f"{base}{done.group(1).removesuffix('/done')}").text
        assert re.search(r"\brevoked\b", grant_page), grant_page[:3000]
        assert "signin.aws.amazon.com/switchrole" not in alice.go("GET", f"{base}/console/").text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        out.append(rest or "")
        print("".join(out)[-6000:])  # shown by pytest when the test fails
    assert proc.returncode == 0, "".join(out)[-3000:]
    assert "console stopped" in "".join(out)
