"""Shared fixtures: real moto server, Redis, SQLite + PostgreSQL, a fake Slack Web API, subprocesses.

Nothing here imports `service` or `workers` at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.moto import aws_env, aws_env_to_clear, reset_moto, running_moto_server
from tests.support.postgres import PostgresServer, pg_admin_url, skip_postgres, unreachable_message
from tests.support.processes import ProcessRegistry
from tests.support.redis_server import RedisProcess, SessionRedis
from tests.support.slack_fake import FakeSlack
from tests.support.slack_signing import DEFAULT_SECRET, TASK_SIGNING_KEY

SLACK_BOT_TOKEN = "xoxb-test"
SLACK_SIGNING_SECRET = DEFAULT_SECRET


# ---- AWS (moto server) ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """URL of a moto server; for the session boto3 defaults to it via AWS_ENDPOINT_URL + fake creds."""
    with running_moto_server() as url, pytest.MonkeyPatch.context() as mp:
        for name in aws_env_to_clear():
            mp.delenv(name, raising=False)
        for name, value in aws_env(url).items():
            mp.setenv(name, value)
        yield url


@pytest.fixture
def moto_reset(moto_server: str) -> str:
    """The moto URL, after wiping every backend: each test starts with empty IAM."""
    reset_moto(moto_server)
    return moto_server


# ---- Redis ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KEYTURN_TEST_REDIS_URL, else redis://127.0.0.1:6379/9 (flushed now), else a private redis-server."""
    try:
        session = SessionRedis(tmp_path_factory.mktemp("redis"))
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield session.url
    finally:
        session.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own (empty, no persistence) that it may stop/kill/restart."""
    try:
        proc = RedisProcess(tmp_path / "redis").start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield proc
    finally:
        proc.stop()


# ---- Databases -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A reachable PostgreSQL with a throwaway session database; skip only if KEYTURN_SKIP_POSTGRES=1."""
    if skip_postgres():
        pytest.skip("KEYTURN_SKIP_POSTGRES=1: PostgreSQL cases skipped")
    try:
        server = PostgresServer()
    except Exception as exc:  # psycopg.OperationalError and friends
        pytest.fail(unreachable_message(pg_admin_url(), exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """postgresql://... of a brand-new empty database, dropped (WITH FORCE) after the test."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """sqlite:///... of a not-yet-existing file in this test's tmp dir."""
    return f"sqlite:///{tmp_path}/keyturn.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL (test ids [sqlite]/[postgresql])."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


# ---- Slack ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def slack_api() -> Iterator[FakeSlack]:
    """The fake Slack Web API; sets SLACK_API_URL, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET for the session."""
    fake = FakeSlack(token=SLACK_BOT_TOKEN).start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLACK_API_URL", fake.base_url)
        mp.setenv("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN)
        mp.setenv("SLACK_SIGNING_SECRET", SLACK_SIGNING_SECRET)
        mp.setenv("KEYTURN_TASK_SIGNING_KEY", TASK_SIGNING_KEY)
        mp.setenv("KEYTURN_SLACK_RESPONSE_HOSTS", fake.root_url)  # its response_urls are on loopback
        try:
            yield fake
        finally:
            fake.stop()


@pytest.fixture
def slack_fake(slack_api: FakeSlack) -> FakeSlack:
    """The session's fake Slack, with calls, faults, handlers, users and usergroups cleared."""
    slack_api.reset()
    return slack_api


# ---- Subprocesses --------------------------------------------------------------------------------
@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[ProcessRegistry]:
    """spawn(argv, env=None, name=None, cwd=repo) -> ManagedProcess; all stopped at teardown.

    Logs live in tmp_path/procs; the tail of each is printed at teardown (shown when a test fails).
    """
    registry = ProcessRegistry(tmp_path / "procs")
    try:
        yield registry
    finally:
        registry.stop_all()
        for proc in registry.processes:
            print(f"----- {proc!r} log tail ({proc.log_path}) -----\n{proc.tail(40)}")
