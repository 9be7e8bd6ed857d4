"""The `keyturn` command line (click's CliRunner, in-process) against a migrated SQLite file and real Redis.

No worker runs: the commands only record transitions, so a grant stays `provisioning`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import celery._state
import pytest
import redis
from click.testing import CliRunner, Result

from service.cli import main
from service.store.db import migrate

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "catalog.example.yaml"
BAD = REPO / "tests" / "catalogs" / "bad_several.yaml"
ALICE, BOB, CAROL, ADMIN = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0ADMIN01"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# ---- config check --------------------------------------------------------------------------------
def test_config_check_accepts_the_example_catalogue() -> None:
    result = _run("config", "check", str(EXAMPLE))
    assert result.exit_code == 0, result.output
    assert "ok (2 accounts, 3 roles, 5 identities)" in result.output


def test_config_check_lists_every_error_with_its_path() -> None:
    result = _run("config", "check", str(BAD))
    assert result.exit_code == 1
    text = result.stderr
    expected = [
        ("settings.trust_policy_max_chars", "256"),
        ("settings.surprise", "not a known field"),
        ("roles[0].id", "lowercase"),
        ("roles[0].account", "'nowhere' is not in accounts"),
        ("roles[0].max_duration", "'forever' is not a duration"),
        ("roles[1].color", "6 hex digits"),
        ("roles[1].min_approvals", "needs 3 distinct approvers"),
    ]
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip()]
    for path, what in expected:
        assert any(line.startswith(f"{path}:") and what in line for line in lines), (path, what, text)
    assert re.match(rf"^{re.escape(str(BAD))}: (\d+) error\(s\)$", text.splitlines()[0])
    assert text.splitlines()[0].endswith(f"{len(lines)} error(s)")
    assert len(lines) == len(expected)


def test_config_check_of_a_missing_file_fails_cleanly(tmp_path: Path) -> None:
    result = _run("config", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read" in result.stderr


# ---- the life of a request -----------------------------------------------------------------------
@pytest.fixture
def cli_env(sqlite_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """DATABASE_URL (migrated), KEYTURN_CATALOG, REDIS_URL on a Redis database of its own (the CLI enqueues
    Celery wake-ups there that no worker must ever pick up), and Celery's default app restored afterwards."""
    migrate(sqlite_url)
    parts = urlsplit(redis_url)
    db = int(parts.path.lstrip("/") or 0)
    own = urlunsplit((parts.scheme, parts.netloc, f"/{15 if db != 15 else 14}", parts.query, ""))
    client = redis.Redis.from_url(own)
    client.flushdb()
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    monkeypatch.setenv("KEYTURN_CATALOG", str(EXAMPLE))
    monkeypatch.setenv("REDIS_URL", own)
    monkeypatch.setattr(celery._state, "default_app", celery._state.default_app)
    monkeypatch.setattr(celery._state._tls, "current_app", celery._state._tls.current_app)
    try:
        yield own
    finally:
        client.flushdb()
        client.close()


def _ok(*args: str) -> str:
    result = _run(*args)
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


def _refused(*args: str) -> str:
    result = _run(*args)
    assert result.exit_code == 1, (args, result.output)
    return result.stderr


def test_request_approve_grants_revoke_and_audit(cli_env: str) -> None:
    assert _ok("request", "prod-admin", "2h", "fixing", "INC-123", "--as", ALICE).strip() == "request 1: pending"
    assert _ok("approve", "1", "--as", BOB).strip() == "request 1: approved (1 approval(s), grant 1)"

    rows = _ok("grants").splitlines()
    assert rows[0].split()[:4] == ["ID", "ROLE", "REQUESTER", "STATE"]
    assert len(rows) == 2
    assert rows[1].split()[:4] == ["1", "prod-admin", ALICE, "provisioning"]  # no worker: not synced yet
    assert re.fullmatch(r"2h|1h59m\d+s", rows[1].split()[-1])  # time left

    # a non-approver's click is refused, with the core's reason, and the request stays pending
    assert _ok("request", "prod-admin", "1h", "second", "--as", BOB).strip() == "request 2: pending"
    assert "refused (not_an_approver)" in _refused("approve", "2", "--as", ALICE)
    assert "refused (self_approval)" in _refused("approve", "2", "--as", BOB)
    assert "refused (not_pending)" in _refused("approve", "1", "--as", CAROL)  # already decided
    assert "refused (reason_required)" in _refused("request", "prod-admin", "1h", "--as", ALICE)
    assert "refused (duration_too_long)" in _refused("request", "prod-admin", "5h", "x", "--as", ALICE)
    bad_duration = _run("request", "prod-admin", "soon", "--as", ALICE)
    assert bad_duration.exit_code == 2 and "'soon' is not a duration" in bad_duration.output
    assert _ok("deny", "2", "--as", CAROL, "--reason", "not now").strip() == "request 2: denied (0 approval(s))"

    assert _ok("revoke", "1", "--as", ALICE).strip() == "grant 1: removal requested"
    assert "refused (not_revocable)" in _refused("revoke", "1", "--as", ALICE)
    assert _ok("grants").splitlines()[1].split()[3] == "ending"
    assert "no grant 99" in _refused("revoke", "99", "--as", ADMIN)

    events = [json.loads(line) for line in _ok("audit", "--format", "jsonl").splitlines()]
    actions = [e["action"] for e in events]
    for action in ("request.filed", "vote.approve", "request.approved", "grant.created", "vote.refused",
                   "vote.deny", "request.denied", "grant.revoke_requested"):
        assert action in actions, (action, actions)
    assert actions.index("request.filed") < actions.index("vote.approve") < actions.index("grant.created")
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)
    refused = [e for e in events if e["action"] == "vote.refused"]
    assert [(e["actor"], e["detail"]["reason"]) for e in refused] == [(ALICE, "not_an_approver"),
                                                                       (BOB, "self_approval")]
    created = next(e for e in events if e["action"] == "grant.created")
    assert created["grant_id"] == 1 and created["request_id"] == 1 and created["at"].endswith("Z")
    assert created["detail"]["principal"] == "arn:aws:iam::111111111111:user/alice"

    table = list(csv.DictReader(io.StringIO(_ok("audit", "--format", "csv"))))
    assert table and {"hash_before", "hash_after", "action", "detail"} <= set(table[0])
    assert [r["action"] for r in table] == actions
    assert json.loads(table[actions.index("grant.created")]["detail"]) == created["detail"]

    assert _ok("audit", "--since", "2099-01-01T00:00Z", "--format", "jsonl") == ""
    assert len(_ok("audit", "--since", "1h").splitlines()) == len(events)

    # the wake-ups went to this test's own Redis database, for a worker that is not running
    assert redis.Redis.from_url(cli_env).llen("celery") > 0
