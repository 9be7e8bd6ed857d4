"""The console's SLACK_CLIENT_ID / SLACK_CLIENT_SECRET (in .env.example, so in every compose stack's
environment, empty or set) must not switch Bolt to its OAuth flow: with it, Bolt authorizes each request
from a file-based installation store, finds nothing and answers every command with an error. Found by
running the compose stack (tests/stack)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slack_bolt import App

from tests.slack.conftest import ALICE, served_world
from tests.support.slack_fake import FakeSlack


@pytest.mark.parametrize("value", ["", "1234567890.1234567890"], ids=["empty", "console-on"])
def test_slash_command_is_served_with_the_consoles_client_id_in_the_environment(
    value: str, sqlite_url: str, redis_url: str, slack_fake: FakeSlack, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_CLIENT_ID", value)
    monkeypatch.setenv("SLACK_CLIENT_SECRET", value and "0123456789abcdef0123456789abcdef")
    with served_world(sqlite_url, redis_url, slack_fake, tmp_path) as world:
        answer = world.command("ops-read 1h looking at the logs", user=ALICE)
        assert answer.status_code == 200, answer.text
        assert answer.json()["text"].startswith("Filing your request for `ops-read`")
        assert world.app.extensions["keyturn.bolt"].oauth_flow is None
    assert os.environ["SLACK_CLIENT_ID"] == value  # put back for the console after Bolt was built


def test_bolt_itself_turns_oauth_on_from_those_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the shield is for: Bolt, built plainly with both variables set (even empty), runs OAuth."""
    monkeypatch.setenv("SLACK_CLIENT_ID", "")
    monkeypatch.setenv("SLACK_CLIENT_SECRET", "")
    app = App(name="plain", signing_secret="0123456789abcdef0123456789abcdef", token="xoxb-test",
              token_verification_enabled=False)
    assert app.oauth_flow is not None
