"""A worker answers an interaction only on Slack's own hosts: a response_url anywhere else (a forged payload,
a look-alike host, user info in front of another host) is logged and never fetched. The "elsewhere" is a
second fake Slack on loopback that must receive nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from service.core.slack_trust import response_url_allowed
from service.settings import DEFAULT_RESPONSE_ORIGINS, Settings, SettingsError
from service.slack.interactions import run_interaction, slack_answer
from tests.slack.conftest import MALLORY, SlackWorld
from tests.support.slack_fake import FakeSlack


@pytest.fixture
def elsewhere() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    try:
        yield fake
    finally:
        fake.stop()


def forged_urls(listener: FakeSlack) -> list[str]:
    port = listener.port
    return [
        listener.response_url("forged"),  # plain loopback
        f"http://hooks.slack.com@127.0.0.1:{port}/response/forged",  # user info in front of the real host
        f"http://127.0.0.1:{port}/response/forged#https://hooks.slack.com/",
    ]


def refused_click(world: SlackWorld, response_url: str) -> dict[str, object]:
    """Mallory's Approve as queued by the web (a refusal the worker answers), with its response_url replaced."""
    world.dispatch.inline = False  # type: ignore[attr-defined]
    request_id = world.file("ops-read")
    world.click("approve_request", request_id, MALLORY)
    payload = dict(world.dispatch.interactions[-1][1])
    payload["response_url"] = response_url
    return payload


def test_a_forged_response_url_is_refused_logged_and_never_fetched(lite: SlackWorld, elsewhere: FakeSlack,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    origins = lite.rt.settings.slack_response_origins
    for url in forged_urls(elsewhere):
        payload = refused_click(lite, url)
        with caplog.at_level(logging.WARNING, logger="service.slack.interactions"):
            run_interaction(lite.ctx, "approve", payload, slack_answer(payload, None, origins))
        assert any("off Slack's hosts" in r.getMessage() for r in caplog.records), url
        caplog.clear()
    assert elsewhere.calls() == []
    # The same answer on an allowed origin arrives: the listener was there to be reached.
    payload = refused_click(lite, elsewhere.response_url("allowed"))
    run_interaction(lite.ctx, "approve", payload, slack_answer(payload, None, (elsewhere.root_url,)))
    (call,) = elsewhere.calls("response_url")
    assert call.params["_key"] == "allowed" and "not an approver" in call.params["text"]


def test_by_default_only_https_hooks_slack_com_is_answered() -> None:
    assert Settings().slack_response_origins == DEFAULT_RESPONSE_ORIGINS == Settings.from_env({}).slack_response_origins
    allowed = ["https://hooks.slack.com/commands/T0TEAM001/1/x", "https://HOOKS.slack.com:443/actions/T1/2/y"]
    refused = ["http://hooks.slack.com/commands/T0TEAM001/1/x", "https://hooks.slack.com.evil.example/x",
               "https://evil.example/hooks.slack.com", "https://hooks.slack.com@evil.example/x",
               "https://user:pw@hooks.slack.com/x", "https://hooks.slack.com:8443/x", "https://slack.com/x",
               "//hooks.slack.com/x", "https://hooks.slack.com/x\n", None, 42, ""]
    assert [u for u in allowed if not response_url_allowed(u, DEFAULT_RESPONSE_ORIGINS)] == []
    assert [u for u in refused if response_url_allowed(u, DEFAULT_RESPONSE_ORIGINS)] == []


def test_the_response_hosts_setting_takes_origins_and_refuses_anything_else() -> None:
    env = {"KEYTURN_SLACK_RESPONSE_HOSTS": "hooks.slack-gov.com, http://127.0.0.1:8123"}
    assert Settings.from_env(env).slack_response_origins == ("https://hooks.slack-gov.com", "http://127.0.0.1:8123")
    for bad in ("https://hooks.slack.com/commands", "ftp://hooks.slack.com", "https://u@hooks.slack.com"):
        with pytest.raises(SettingsError, match="KEYTURN_SLACK_RESPONSE_HOSTS"):
            Settings.from_env({"KEYTURN_SLACK_RESPONSE_HOSTS": bad})
