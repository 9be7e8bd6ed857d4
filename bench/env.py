"""The stack every benchmark runs on, all on this machine and on loopback only.

* fake Slack Web API (its own process), moto server (its own process) behind the IAM proxy
  (bench/iam_proxy.py: counts IAM calls, can throttle writes), Redis (one database of the local server),
  a fresh PostgreSQL database (as production) or a SQLite file, migrated with Alembic;
* IAM seeded from the bench catalogue: 20 trust-policy roles, one group-membership role, 200 principals;
* gunicorn `service.wsgi:app` (gevent workers, from service/gunicorn_conf.py), a Celery worker and Celery beat
  at the shipped sweep interval (KEYTURN_SWEEP_INTERVAL is not set: the shipped 5 s), every process with the
  same environment a deployment would give it.

`Stack.reset()` stops the app processes, empties the database, moto, the Redis keys and the proxy counters,
re-seeds IAM and starts the app processes again: every benchmark starts from the same clean state.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis
import requests
import yaml

from bench.catalogue import (
    BOT_TOKEN,
    SIGNING_SECRET,
    TASK_SIGNING_KEY,
    catalogue,
)
from bench.clients import StackClients
from service.queues import QUEUES
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess

PY = sys.executable
PG_ADMIN_URL = os.environ.get("KEYTURN_BENCH_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
# Database 14 of the local Redis: the tests use db 9 there (tests/support/redis_server.py) and private servers.
REDIS_BASE = os.environ.get("KEYTURN_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/14"


@dataclass(frozen=True)
class StackConfig:
    web_workers: int = 2
    web_threads: int = 4
    web_worker_class: str = "gevent"  # what service/gunicorn_conf.py ships; or "gthread"
    worker_pool: str = "prefork"  # or "solo"
    worker_concurrency: int = 2
    # None: KEYTURN_SWEEP_INTERVAL is not set, so every process runs at the shipped default (5 s). The benchmarks
    # measure the shipped configuration; a value here ("1s") is for an experiment, and the report says so.
    sweep_interval: str | None = None
    database: str = "postgresql"  # or "sqlite"
    log_level: str = "INFO"
    # CPU priority of the Celery worker (nice). The web's acknowledgements are latency-bound and the worker's
    # work is throughput-bound; on one shared machine a positive value stands for what separate containers
    # with CPU shares do in production (docker-compose.yml gives the worker cpu_shares 256 against 1024).
    worker_nice: int = 0

    @property
    def sweep_interval_s(self) -> float:
        """The sweep interval every process runs at (the shipped default unless overridden)."""
        from service.core.durations import parse_duration
        from service.settings import Settings

        if self.sweep_interval is None:
            return Settings().sweep_interval.total_seconds()
        return parse_duration(self.sweep_interval).total_seconds()

    def sweep_description(self) -> str:
        if self.sweep_interval is None:
            return f"sweep every {self.sweep_interval_s:g} s (the shipped default; KEYTURN_SWEEP_INTERVAL not set)"
        return f"KEYTURN_SWEEP_INTERVAL={self.sweep_interval} (NOT the shipped default)"

    def describe(self) -> str:
        pool = (f"prefork pool, concurrency {self.worker_concurrency}" if self.worker_pool == "prefork"
                else "solo pool (one task at a time)")
        return (f"gunicorn `service.wsgi:app`, {self.web_workers} {self.web_worker_class} workers x "
                f"{self.web_threads} threads; "
                f"one Celery worker ({pool}); Celery beat, {self.sweep_description()}; "
                f"{'PostgreSQL' if self.database == 'postgresql' else 'SQLite'}; log level {self.log_level}"
                + (f"; Celery worker at nice {self.worker_nice}" if self.worker_nice else ""))


class SyncOnlyDispatcher:
    """For benchmark set-up done in-process: wake syncs like the service, skip the set-up's notifications
    (they are not what is measured and would queue in front of the syncs)."""

    def __init__(self, inner: Any):
        self.inner = inner

    def sync(self, target_key: str, *, force: bool = False, urgent: bool = False) -> None:
        self.inner.sync(target_key, force=force, urgent=urgent)

    def notify(self, event: str, **ids: Any) -> None:
        return None


@dataclass
class Stack(StackClients):
    config: StackConfig = field(default_factory=StackConfig)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="keyturn-bench-")))

    def __post_init__(self) -> None:
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.catalog_path = self.workdir / "catalog.yaml"
        self.catalog_path.write_text(yaml.safe_dump(catalogue(), sort_keys=False))
        self.infra: list[ManagedProcess] = []
        self.web: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.beat: ManagedProcess | None = None
        self.db_url = ""
        self._pg_db: str | None = None
        self._rt: Any = None
        self._iam: Any = None
        self._redis: Any = None

    # ---- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Stack:
        self.slack_port, self.moto_port, self.proxy_port, self.web_port = (free_port() for _ in range(4))
        self._spawn_infra("slack", [PY, "-m", "bench.slack_server", "--port", str(self.slack_port),
                                    "--token", BOT_TOKEN], self.slack_port)
        self._spawn_infra("moto", [PY, "-m", "bench.moto_server", "--port", str(self.moto_port)], self.moto_port)
        self._spawn_infra("iam-proxy", [PY, "-m", "bench.iam_proxy", "--port", str(self.proxy_port),
                                        "--upstream", self.moto_url], self.proxy_port)
        self.redis_url = REDIS_BASE
        self.redis.flushdb()  # the benchmark's own database number on the local server
        self._create_database()
        from service.store.db import migrate

        migrate(self.db_url)
        os.environ.update(self.env())
        unset = ["AWS_PROFILE"] + ([] if self.config.sweep_interval else ["KEYTURN_SWEEP_INTERVAL"])
        for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")] + unset:
            os.environ.pop(name, None)
        self.seed()
        self.start_app()
        return self

    def close(self) -> None:
        self.stop_app()
        if self._rt is not None:
            self._rt.engine.dispose()
        for proc in reversed(self.infra):
            proc.stop(5)
        if self._pg_db:
            import psycopg
            from psycopg import sql

            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self._pg_db)))
        if self._redis is not None:
            self._redis.flushdb()
            self._redis.close()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _spawn_infra(self, name: str, argv: list[str], port: int) -> ManagedProcess:
        proc = ManagedProcess(argv, self.logs / f"{name}.log", name=name).start()
        self.infra.append(proc)
        wait_for_port("127.0.0.1", port, timeout=30)
        return proc

    def _create_database(self) -> None:
        if self.config.database == "sqlite":
            self.db_url = f"sqlite:///{self.workdir}/keyturn.db"
            return
        import psycopg
        from psycopg import sql

        from tests.support.postgres import with_database

        self._pg_db = f"keyturn_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._pg_db)))
        self.db_url = with_database(PG_ADMIN_URL, self._pg_db)

    # ---- the environment every Keyturn process gets -------------------------------------------------
    @property
    def moto_url(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def slack_url(self) -> str:
        return f"http://127.0.0.1:{self.slack_port}"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def events_url(self) -> str:
        return f"{self.web_url}/slack/events"

    def response_url(self, key: str = "bench") -> str:
        return f"{self.slack_url}/response/{key}"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.db_url, "REDIS_URL": self.redis_url, "KEYTURN_CATALOG": str(self.catalog_path),
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "KEYTURN_TASK_SIGNING_KEY": TASK_SIGNING_KEY, "KEYTURN_SLACK_RESPONSE_HOSTS": self.slack_url,
            "SLACK_API_URL": f"{self.slack_url}/api/", "AWS_ENDPOINT_URL": self.proxy_url,
            "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
            "KEYTURN_LOG_LEVEL": self.config.log_level, "PYTHONUNBUFFERED": "1",
        } | ({"KEYTURN_SWEEP_INTERVAL": self.config.sweep_interval} if self.config.sweep_interval else {})

    # ---- the app processes -------------------------------------------------------------------------
    def start_app(self) -> None:
        self.start_web()
        self.start_workers()
        self.wait_web_ready()

    def start_workers(self) -> None:
        """The Celery worker and beat; returns once the worker is consuming."""
        self.start_worker()
        self.beat = ManagedProcess(
            [PY, "-m", "celery", "-A", "workers.main:celery_app", "beat", "--loglevel", "WARNING",
             "--schedule", str(self.workdir / "beat-schedule")],
            self.logs / "beat.log", env=self.env(), name="beat").start()
        self.wait_worker_ready()

    def stop_workers(self) -> None:
        for proc in (self.beat, self.worker):
            if proc is not None:
                proc.stop(15)
        self.beat = self.worker = None

    def stop_app(self) -> None:
        self.stop_workers()
        if self.web is not None:
            self.web.stop(15)
        self.web = None

    def start_web(self) -> None:
        c = self.config
        self.web = ManagedProcess(
            # The shipped configuration file; the flags after it override only what the bench varies.
            [PY, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service.wsgi:app",
             "-k", c.web_worker_class, "-w", str(c.web_workers),
             "--threads", str(c.web_threads), "-b", f"127.0.0.1:{self.web_port}",
             "--log-level", "warning", "--graceful-timeout", "5"],
            self.logs / "web.log", env=self.env(), name="web").start()

    def wait_web_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        ok = 0
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.web_url}/readyz", timeout=2).status_code == 200:
                    ok += 1
                    if ok >= 2 * self.config.web_workers:  # every worker has had a chance to answer
                        return
            except requests.RequestException:
                pass
            if self.web is not None and not self.web.alive:
                raise RuntimeError(f"gunicorn exited:\n{self.web.tail()}")
            time.sleep(0.2)
        raise TimeoutError("gunicorn did not become ready")

    def start_worker(self) -> float:
        """Start the Celery worker; returns the wall-clock time of the spawn."""
        c = self.config
        argv = [PY, "-m", "celery", "-A", "workers.main:celery_app", "worker", "--loglevel", "INFO",
                "--pool", c.worker_pool, "--without-gossip", "--without-mingle", "--without-heartbeat",
                "--hostname", f"bench-{os.getpid()}@%h"]
        if c.worker_pool == "prefork":
            argv += ["--concurrency", str(c.worker_concurrency)]
        self.worker = ManagedProcess(argv, self.logs / "worker.log", env=self.env(), name="worker")
        self._worker_log_mark = len(self.worker.log_text())
        spawned = time.time()
        self.worker.start()
        if c.worker_nice:
            self._renice_session(self.worker, c.worker_nice)
        return spawned

    @staticmethod
    def _renice_session(proc: Any, nice: int) -> None:
        """Lower the CPU weight of a process's whole session. Each managed process runs in its own session,
        and with the kernel's autogroup scheduling (sched_autogroup_enabled) CPU is shared between sessions
        first: a plain `nice` would only rank the worker against its own pool processes. The autogroup's
        nice is the per-session weight, like a container's CPU shares."""
        pid = proc.pid
        try:
            Path(f"/proc/{pid}/autogroup").write_text(str(nice))
        except OSError:
            pass  # no autogroup scheduling here: nice the process itself (its pool processes inherit it)
        os.setpriority(os.PRIO_PROCESS, pid, nice)

    def wait_worker_ready(self, timeout: float = 60) -> float:
        """Block until the worker logs `ready.`; returns the wall-clock time it was seen."""
        assert self.worker is not None
        self.worker.wait_for_log(r"ready\.", timeout=timeout, start_at=self._worker_log_mark)
        return time.time()

    def kill_worker(self) -> None:
        """A crash: SIGKILL the worker's whole process group (pool children too)."""
        assert self.worker is not None
        self.worker.kill()

    def process_groups(self) -> dict[int, str]:
        """Process group -> label for every process this stack started (pool children share the group)."""
        labels = {"slack": "fake Slack", "moto": "moto", "iam-proxy": "IAM proxy", "web": "web (gunicorn)",
                  "worker": "celery worker", "beat": "celery beat"}
        procs = [*self.infra, self.web, self.worker, self.beat]
        return {p.pid: labels.get(p.name, p.name) for p in procs if p is not None and p.pid is not None}

    @property
    def db_name(self) -> str | None:
        return self._pg_db

    # ---- state -------------------------------------------------------------------------------------
    def seed(self) -> None:
        from service.catalog import load_catalog
        from service.demo.local import seed_iam

        seed_iam(self.iam, load_catalog(self.catalog_path))

    def wipe(self) -> None:
        """Empty the database, IAM (then re-seed), Keyturn's and Celery's Redis keys, the proxy counters."""
        from sqlalchemy import create_engine, text

        from service.store.models import Base

        tables = [t.name for t in Base.metadata.sorted_tables]
        url = self.db_url.replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url)
        with engine.begin() as conn:
            if self.config.database == "postgresql":
                conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for name in reversed(tables):
                    conn.execute(text(f"DELETE FROM {name}"))
                conn.execute(text("DELETE FROM sqlite_sequence"))
        engine.dispose()
        if self._rt is not None:
            self._rt.engine.dispose()
        req = urllib.request.Request(f"{self.moto_url}/moto-api/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass
        self.seed()
        keys = [*self.redis.scan_iter("keyturn:*"), *QUEUES, "unacked", "unacked_index", "unacked_mutex"]
        self.redis.delete(*keys)
        self.proxy_reset()
        self.proxy_config(None)

    def reset(self, *, web: bool = False, config: StackConfig | None = None) -> None:
        """Clean state for the next benchmark: stop the worker and beat (nothing may write to IAM while it is
        wiped), wipe, start them again. gunicorn is restarted only with `web=True` (it never touches IAM)."""
        if config is not None:
            web = web or ((config.web_workers, config.web_threads, config.web_worker_class)
                          != (self.config.web_workers, self.config.web_threads, self.config.web_worker_class))
            self.config = config
        self.stop_workers()
        if web:
            if self.web is not None:
                self.web.stop(15)
            self.web = None
        self.wipe()
        if web:
            self.start_web()
        self.start_workers()
        if web:
            self.wait_web_ready()

    # ---- clients -----------------------------------------------------------------------------------
    @property
    def redis(self) -> Any:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    @property
    def iam(self) -> Any:
        """boto3 IAM straight to moto (not through the proxy: what the benchmark reads is not counted)."""
        if self._iam is None:
            import boto3
            from botocore.config import Config

            self._iam = boto3.client("iam", endpoint_url=self.moto_url, region_name="us-east-1",
                                     aws_access_key_id="bench", aws_secret_access_key="bench",
                                     config=Config(retries={"mode": "standard", "max_attempts": 3}))
        return self._iam

    def runtime(self) -> Any:
        """Keyturn's own composition root, in this process, on the stack's database/broker (for set-up)."""
        if self._rt is None:
            from service.app import create_app
            from service.settings import Settings

            app = create_app(Settings.from_env().with_(log_level="WARNING"))
            self._rt = app.extensions["keyturn"]
        return self._rt

    def setup_ctx(self) -> Any:
        rt = self.runtime()
        return replace(rt.ctx, dispatch=SyncOnlyDispatcher(rt.ctx.dispatch))

    def proxy_stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.proxy_url}/__proxy/stats", timeout=5).json())

    def proxy_reset(self) -> None:
        requests.post(f"{self.proxy_url}/__proxy/reset", timeout=5)

    def proxy_config(self, write_rate: float | None) -> None:
        requests.post(f"{self.proxy_url}/__proxy/config", json={"write_rate": write_rate}, timeout=5)

    def slack_stats(self) -> dict[str, Any]:
        return dict(requests.get(f"{self.slack_url}/__bench/stats", timeout=5).json())

    def queue_depth(self) -> int:
        return sum(int(self.redis.llen(q)) for q in QUEUES) + int(self.redis.hlen("unacked"))

    def wait_quiet(self, timeout: float = 120, settle: float = 1.0) -> bool:
        """Until the broker has nothing queued or in flight for `settle` seconds (bounded by `timeout`)."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if self.queue_depth() == 0:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle:
                    return True
            else:
                quiet_since = None
            time.sleep(0.1)
        return False
