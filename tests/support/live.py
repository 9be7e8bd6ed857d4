"""Keyturn as real processes: a Celery worker and beat on a real Redis, moto (behind a fault proxy) as
AWS, SQLite or PostgreSQL as the truth. The test process files and approves through the use cases,
which enqueue through Celery exactly as the web process does.

The broker is a private redis-server per test (when `redis-server` is installed): two pytest sessions
on one machine would otherwise share, and flush, the shared server's database under each other's workers.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import celery._state
import pytest
import yaml
from sqlalchemy import select

from tests.support.fault_proxy import FaultProxy
from tests.support.processes import ManagedProcess, ProcessRegistry
from tests.support.redis_server import flushdb
from tests.support.slack_signing import TASK_SIGNING_KEY

ROLE_ID, ROLE_NAME, ACCOUNT = "ops-admin", "OpsAdmin", "123456789012"
ALICE, BOB, APPROVER = "U0ALICE01", "U0BOB0001", "U0APPR01"
CATALOG = {
    "settings": {"admins": ["U0ADMIN01"], "request_timeout": "2h"},
    "accounts": [{"id": ACCOUNT, "alias": "moto"}],
    "principals": {ALICE: f"arn:aws:iam::{ACCOUNT}:user/alice", BOB: f"arn:aws:iam::{ACCOUNT}:user/bob"},
    "roles": [{
        "id": ROLE_ID, "name": "Ops admin", "account": "moto", "role_name": ROLE_NAME, "path": "/keyturn/",
        "strategy": "trust_policy", "approvers": [APPROVER, "U0APPR02"], "max_duration": "4h",
    }],
}
WAIT = 30.0  # generous, bounded: every wait in these tests ends by this
SHORT = 5  # seconds: a grant that expires during the test (a worker activates it well before)
_uniq = itertools.count()


@pytest.fixture
def fault_proxy(moto_server: str) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's moto server (no faults until programmed)."""
    with FaultProxy(moto_server) as proxy:
        yield proxy


@pytest.fixture
def broker_url(request: pytest.FixtureRequest) -> str:
    """This test's own redis-server (the `private_redis` fixture), else a flushed db on the session Redis."""
    if shutil.which("redis-server"):
        return str(request.getfixturevalue("private_redis").url(0))
    url = str(request.getfixturevalue("redis_url"))
    flushdb(url)
    return url


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(CATALOG, sort_keys=False))
    return path


@dataclass
class Keyturn:
    """One Keyturn installation for one test: its env, processes, in-test runtime and inspection client."""

    env: dict[str, str]
    workdir: Path
    spawn: ProcessRegistry
    proxy: FaultProxy
    moto_url: str
    runtime: Any
    iam: Any  # straight to moto: what IAM really holds, unaffected by faults
    procs: list[ManagedProcess] = field(default_factory=list)

    @property
    def ctx(self) -> Any:
        return self.runtime.ctx

    @property
    def catalog(self) -> Any:
        return self.runtime.catalog

    # ---- processes ---------------------------------------------------------------------------------
    def start_worker(self, *, aws_url: str | None = None, ready: bool = True) -> ManagedProcess:
        """A solo-pool worker; AWS through the fault proxy unless `aws_url` says otherwise."""
        name = f"w{next(_uniq)}x{os.getpid()}"
        argv = [sys.executable, "-m", "celery", "-A", "workers.main:celery_app", "worker", "--pool", "solo",
                "--without-gossip", "--without-mingle", "--loglevel", "INFO", "--hostname", f"{name}@%h"]
        env = {**self.env, "AWS_ENDPOINT_URL": aws_url or self.env["AWS_ENDPOINT_URL"]}
        proc = self.spawn(argv, env=env, name=f"worker-{name}")
        self.procs.append(proc)
        if ready:
            proc.wait_for_log(r"ready\.", timeout=WAIT)
        return proc

    def start_beat(self, schedule: str = "beat-schedule") -> ManagedProcess:
        """A beat; a second one at once needs its own `schedule` file (as on a second host)."""
        argv = [sys.executable, "-m", "celery", "-A", "workers.main:celery_app", "beat", "--schedule",
                str(self.workdir / schedule), "--loglevel", "INFO"]
        proc = self.spawn(argv, env=self.env, name=f"beat-{schedule}")
        self.procs.append(proc)
        proc.wait_for_log(r"beat: Starting", timeout=WAIT)
        return proc

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"----- {p!r} -----\n{p.tail(lines)}" for p in self.procs)

    def wait_until(self, what: str | Callable[[], str], check: Callable[[], Any], timeout: float = WAIT) -> Any:
        """Poll `check` until truthy; on timeout fail with `what` (a callable is asked then) and the logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                told = what() if callable(what) else what
                raise AssertionError(f"timed out after {timeout}s waiting for {told}\n{self.logs()}")
            time.sleep(0.1)

    # ---- use cases, as the web process runs them ---------------------------------------------------
    def grant(self, seconds: float, user: str = ALICE) -> int:
        """File and approve; the grant id (provisioning until a worker syncs it)."""
        from service.core.rules import Vote
        from service.operations.decide_request import decide_request
        from service.operations.request_access import request_access

        filed = request_access(self.ctx, requester=user, role_id=ROLE_ID, duration=timedelta(seconds=seconds),
                               reason="integration test")
        decided = decide_request(self.ctx, request_id=filed.request_id, approver=APPROVER, vote=Vote.APPROVE)
        assert decided.grant_id is not None, decided
        return int(decided.grant_id)

    def revoke(self, grant_id: int, actor: str = ALICE) -> None:
        from service.operations.revoke_grant import revoke_grant

        revoke_grant(self.ctx, grant_id=grant_id, actor_id=actor)

    # ---- reading the truth -------------------------------------------------------------------------
    def row(self, grant_id: int) -> Any:
        from service.store.models import Grant

        with self.ctx.store() as session:
            return session.get(Grant, grant_id)

    def state(self, grant_id: int) -> str:
        return str(self.row(grant_id).state)

    def wait_state(self, grant_id: int, state: str, timeout: float = WAIT) -> None:
        self.wait_until(lambda: f"grant {grant_id} to be {state} (it is {self.state(grant_id)})",
                        lambda: self.state(grant_id) == state, timeout)

    def dirty_targets(self) -> list[str]:
        from service.store.models import Target

        with self.ctx.store() as session:
            return list(session.execute(select(Target.key).where(Target.dirty_since.is_not(None))).scalars())

    def wait_settled(self, timeout: float = WAIT) -> None:
        """Until no target waits for a sync (follow-ups such as the session cut included)."""
        self.wait_until(lambda: f"every target to be synced (dirty: {self.dirty_targets()})",
                        lambda: not self.dirty_targets(), timeout)

    def wait_past_expiry(self, grant_id: int, margin: float = 0.5) -> None:
        expires = self.row(grant_id).expires_at
        self.wait_until(f"grant {grant_id}'s expiry to pass",
                        lambda: datetime.now(UTC) > expires + timedelta(seconds=margin))

    def trust(self) -> dict[str, Any]:
        return dict(self.iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"])

    def statements_for(self, user: str = ALICE) -> list[dict[str, Any]]:
        from service.core.policy import owned_sid

        sid = owned_sid(self.catalog.principals[user])
        return [s for s in self.trust()["Statement"] if s.get("Sid") == sid]

    def foreign(self) -> list[dict[str, Any]]:
        from service.core.policy import split

        return split(self.trust())[0]

    def audits(self, **where: Any) -> list[Any]:
        from service.store.models import AuditEvent

        with self.ctx.store() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            for name, value in where.items():
                query = query.where(getattr(AuditEvent, name) == value)
            return list(session.execute(query).scalars())

    def target_key(self) -> str:
        from service.core.targets import TargetKind, TargetRef

        return TargetRef(TargetKind.TRUST_POLICY, ACCOUNT, ROLE_NAME).key


@pytest.fixture
def keyturn_procs(db_url: str, broker_url: str, catalog_path: Path, moto_reset: str, fault_proxy: FaultProxy,
                  spawn: ProcessRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Keyturn]:
    """A migrated database, IAM seeded from the catalogue, the processes' env and the in-test runtime.

    Processes are started by the test (`start_worker`, `start_beat`) and stopped at teardown by `spawn`.
    """
    from service.app import create_app
    from service.catalog import load_catalog
    from service.demo.local import seed_iam
    from service.settings import Settings
    from service.store.db import migrate

    migrate(db_url)
    iam = boto3.client("iam", endpoint_url=moto_reset, region_name="us-east-1")
    seed_iam(iam, load_catalog(catalog_path))
    env = {
        "DATABASE_URL": db_url, "REDIS_URL": broker_url, "KEYTURN_CATALOG": str(catalog_path),
        "AWS_ENDPOINT_URL": fault_proxy.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1", "KEYTURN_SWEEP_INTERVAL": "1s", "KEYTURN_LOCK_TIMEOUT": "3s",
        "KEYTURN_SYNC_MAX_RETRIES": "3", "KEYTURN_RECONCILE_INTERVAL": "1h",  # the sweeper, not reconcile
        "SLACK_BOT_TOKEN": "", "KEYTURN_API_TOKENS": "", "KEYTURN_LOG_LEVEL": "INFO",
        "KEYTURN_TASK_SIGNING_KEY": TASK_SIGNING_KEY,  # the in-test runtime seals what it queues
    }
    # create_app sets its Celery app as the process default and adds a JSON log handler: undo both after.
    monkeypatch.setattr(celery._state, "default_app", celery._state.default_app)
    monkeypatch.setattr(celery._state._tls, "current_app", celery._state._tls.current_app)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    runtime = create_app(Settings.from_env(env)).extensions["keyturn"]
    kt = Keyturn(env=env, workdir=tmp_path, spawn=spawn, proxy=fault_proxy, moto_url=moto_reset,
                 runtime=runtime, iam=iam)
    try:
        yield kt
    finally:
        runtime.engine.dispose()
        runtime.redis.close()
        root.handlers[:] = handlers
        root.setLevel(level)
