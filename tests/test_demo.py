"""`make demo` as a newcomer runs it: real Redis, moto server, a worker and beat, one IAM user and one
IAM Identity Center person granted and revoked; it exits 0 only when every step checked out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_the_demo_walks_the_lifecycle_for_an_iam_user_and_an_sso_person(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KEYTURN_", "DATABASE_URL", "REDIS"))}
    done = subprocess.run([sys.executable, "-m", "service.cli", "demo", "--short"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "demo finished: every step checked out" in out
    assert "aws:userid" in out and "dana@example.com" in out
    assert "grant 1 expired; the sweeper removed the statement: gone" in out
