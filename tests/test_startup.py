"""Every process refuses to start on an invalid catalogue, with the messages `keyturn config check` prints.

Real processes: gunicorn's import of `service.wsgi`, the Celery worker's `workers.main`, and the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.slack_signing import DEFAULT_SECRET, TASK_SIGNING_KEY

REPO = Path(__file__).resolve().parents[1]
BAD = REPO / "tests" / "catalogs" / "bad_several.yaml"
ENTRY_POINTS = {
    "web (gunicorn's service.wsgi:app)": [sys.executable, "-c", "import service.wsgi"],
    "worker and beat (workers.main)": [sys.executable, "-m", "celery", "-A", "workers.main:celery_app", "inspect",
                                       "ping"],
}


EXAMPLE = REPO / "config" / "catalog.example.yaml"
SECRETS = {"SLACK_SIGNING_SECRET": DEFAULT_SECRET, "SLACK_BOT_TOKEN": "xoxb-test",
           "KEYTURN_TASK_SIGNING_KEY": TASK_SIGNING_KEY, "KEYTURN_SLACK_TEAM_ID": "T0TEAM001"}


def _env(catalog: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """No Slack secrets (the web serves no Slack) unless `extra` gives them."""
    return {**os.environ, "KEYTURN_CATALOG": str(catalog), "DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
            "REDIS_URL": "redis://127.0.0.1:1/0", "SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "",
            "KEYTURN_TASK_SIGNING_KEY": "", "KEYTURN_API_TOKENS": "", **extra}


def _error_lines(text: str) -> set[str]:
    """The `path: message` lines of a catalogue report, wherever they stand in the output."""
    return {line.strip() for line in text.splitlines()
            if line.strip().startswith(("settings.", "roles[", "accounts[", "principals"))}


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_an_invalid_catalogue_stops_the_process_with_config_checks_messages(name: str, tmp_path: Path) -> None:
    check = subprocess.run([sys.executable, "-m", "service.cli", "config", "check", str(BAD)], cwd=REPO,
                           capture_output=True, text=True, timeout=60, env=_env(BAD, tmp_path))
    assert check.returncode == 1
    expected = _error_lines(check.stderr)
    assert len(expected) >= 5, check.stderr

    started = subprocess.run(ENTRY_POINTS[name], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env=_env(BAD, tmp_path))
    assert started.returncode != 0, f"{name} started on an invalid catalogue:\n{started.stdout}\n{started.stderr}"
    assert expected <= _error_lines(started.stderr), started.stderr


def test_a_valid_catalogue_lets_the_web_process_start(tmp_path: Path) -> None:
    example = REPO / "config" / "catalog.example.yaml"
    started = subprocess.run(ENTRY_POINTS["web (gunicorn's service.wsgi:app)"], cwd=REPO, capture_output=True,
                             text=True, timeout=60, env=_env(example, tmp_path))
    assert started.returncode == 0, started.stderr


def test_the_worker_builds_no_http_surface_and_keeps_the_notifier(tmp_path: Path) -> None:
    # A worker restarted after an outage has overdue revocations waiting: its boot leaves out Bolt, the REST
    # API and the routes (bench/RESULTS.md, revocation), but not what its tasks use.
    probe = ("import sys, workers.main as m; app = m.flask_app; "
             "print(sorted(r.rule for r in app.url_map.iter_rules()), 'keyturn.notifier' in app.extensions, "
             "'keyturn' in app.extensions, 'slack_bolt' in sys.modules, 'service.api.rest' in sys.modules)")
    env = _env(EXAMPLE, tmp_path, **SECRETS)
    worker = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=env)
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["['/static/<path:filename>']", "True", "True", "False", "False"]
    web = subprocess.run([sys.executable, "-c", "import service.wsgi as w; "
                          "print(sorted(r.rule for r in w.app.url_map.iter_rules()))"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert web.returncode == 0, web.stderr
    assert "/slack/events" in web.stdout and "/api/v1/requests" in web.stdout


def _start_web(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    probe = "import service.wsgi as w; print(sorted(r.rule for r in w.app.url_map.iter_rules()))"
    return subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=_env(EXAMPLE, tmp_path, **extra))


BAD_SECRETS = {
    "no signing secret": ({"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET is not set"),
    "the .env.example secret": ({"SLACK_SIGNING_SECRET": "replace-me"}, "SLACK_SIGNING_SECRET is a placeholder"),
    "a short secret": ({"SLACK_SIGNING_SECRET": "0123456789abcdef"}, "SLACK_SIGNING_SECRET is too short"),
    "a secret of one letter": ({"SLACK_SIGNING_SECRET": "a" * 40}, "SLACK_SIGNING_SECRET is too short"),
    "no bot token": ({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN is not set"),
    "the .env.example token": ({"SLACK_BOT_TOKEN": "xoxb-replace-me"}, "SLACK_BOT_TOKEN is not a bot token"),
    "a user token": ({"SLACK_BOT_TOKEN": "xoxp-1234-5678-abcdef"}, "SLACK_BOT_TOKEN is not a bot token"),
    "no task key": ({"KEYTURN_TASK_SIGNING_KEY": ""}, "KEYTURN_TASK_SIGNING_KEY is not set"),
    "a placeholder task key": ({"KEYTURN_TASK_SIGNING_KEY": "replace-me-with-a-long-random-string"},
                               "KEYTURN_TASK_SIGNING_KEY is a placeholder"),
}


@pytest.mark.parametrize("case", list(BAD_SECRETS))
def test_the_web_refuses_to_start_on_a_missing_copied_or_short_slack_secret(case: str, tmp_path: Path) -> None:
    change, message = BAD_SECRETS[case]
    started = _start_web(tmp_path, **{**SECRETS, **change})
    assert started.returncode != 0, f"the web started with {case}:\n{started.stdout}"
    assert message in started.stderr, started.stderr
    for value in change.values():
        if value:
            assert value not in started.stderr  # named, never quoted


def test_the_web_serves_slack_only_with_all_its_secrets_and_no_slack_with_none(tmp_path: Path) -> None:
    served = _start_web(tmp_path, **SECRETS)
    assert served.returncode == 0, served.stderr
    assert "/slack/events" in served.stdout
    without = _start_web(tmp_path)  # the REST API and the CLI only: nothing answers for Slack
    assert without.returncode == 0, without.stderr
    assert "/slack/events" not in without.stdout and "/api/v1/requests" in without.stdout
    assert "/slack/events is not served" in without.stderr


API_TOKENS = {
    "the same token for two users": ("U0ALICE01:shared-token-4f9a1c7e2b,U0BOB0001:shared-token-4f9a1c7e2b",
                                     "U0ALICE01 and U0BOB0001 are given the same token"),
    "a short token": ("U0ALICE01:short-9a1c", "the token of entry 1 (U0ALICE01) is too short"),
    "a placeholder": ("U0ALICE01:replace-me-with-a-token", "the token of entry 1 (U0ALICE01) is a placeholder"),
}


@pytest.mark.parametrize("case", list(API_TOKENS))
@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_process_refuses_duplicate_short_or_copied_api_tokens(name: str, case: str, tmp_path: Path) -> None:
    tokens, message = API_TOKENS[case]
    started = subprocess.run(ENTRY_POINTS[name], cwd=REPO, capture_output=True, text=True, timeout=60,
                             env=_env(EXAMPLE, tmp_path, KEYTURN_API_TOKENS=tokens))
    assert started.returncode != 0, f"{name} started with {case}"
    assert f"KEYTURN_API_TOKENS: {message}" in started.stderr, started.stderr
    assert tokens.split(":")[-1] not in started.stderr  # the token itself is never printed
