"""Every process refuses to start on an invalid catalogue, with the messages `keyturn config check` prints.

Real processes: gunicorn's import of `service.wsgi`, the Celery worker's `workers.main`, and the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BAD = REPO / "tests" / "catalogs" / "bad_several.yaml"
ENTRY_POINTS = {
    "web (gunicorn's service.wsgi:app)": [sys.executable, "-c", "import service.wsgi"],
    "worker and beat (workers.main)": [sys.executable, "-m", "celery", "-A", "workers.main:celery_app", "inspect",
                                       "ping"],
}


def _env(catalog: Path, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KEYTURN_CATALOG": str(catalog), "DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
            "REDIS_URL": "redis://127.0.0.1:1/0", "SLACK_BOT_TOKEN": "", "KEYTURN_API_TOKENS": ""}


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
    env = {**_env(REPO / "config" / "catalog.example.yaml", tmp_path), "SLACK_BOT_TOKEN": "xoxb-test"}
    worker = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env=env)
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["['/static/<path:filename>']", "True", "True", "False", "False"]
    web = subprocess.run([sys.executable, "-c", "import service.wsgi as w; "
                          "print(sorted(r.rule for r in w.app.url_map.iter_rules()))"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert web.returncode == 0, web.stderr
    assert "/slack/events" in web.stdout and "/api/v1/requests" in web.stdout
