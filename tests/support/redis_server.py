"""Real Redis for tests: an existing server, or a private `redis-server` we start and stop."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.ports import free_port

REDIS_MISSING = (
    "Redis is needed for these tests and none was found: set KEYTURN_TEST_REDIS_URL=redis://host:port/db, "
    "run a server on 127.0.0.1:6379, or install one so `redis-server` is on PATH "
    "(Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`)."
)
SHARED_DB = 9  # the database used on a shared 127.0.0.1:6379; flushed at session start


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def flushdb(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


class RedisProcess:
    """A private `redis-server` on one port, with no persistence, that tests can stop and restart.

    The port stays the same across restarts, so URLs handed to workers stay valid.
    """

    def __init__(self, workdir: Path, port: int | None = None, executable: str = "redis-server") -> None:
        found = shutil.which(executable)
        if found is None:
            raise RuntimeError(REDIS_MISSING)
        self.executable = found
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"redis-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisProcess:
        if self.alive:
            return self
        argv = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            "",
        ]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + timeout
        while not ping(self.url()):
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"redis-server on port {self.port} did not answer PING in {timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM; nothing is saved since persistence is off)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: Redis vanishes mid-flight, as in a crash. Data is lost (no persistence)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def restart(self, down_for: float = 0.0) -> RedisProcess:
        """Stop, optionally stay down `down_for` seconds, start again on the same port (empty)."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        return self.start()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class SessionRedis:
    """Where the session's Redis is: env URL, else the shared local server (db 9), else a private one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: RedisProcess | None = None
        self.url = self._resolve()

    def _resolve(self) -> str:
        explicit = os.environ.get("KEYTURN_TEST_REDIS_URL")
        if explicit:
            if not ping(explicit, timeout=2):
                raise RuntimeError(f"KEYTURN_TEST_REDIS_URL={explicit} does not answer PING")
            return explicit
        shared = f"redis://127.0.0.1:6379/{SHARED_DB}"
        if ping(shared):
            flushdb(shared)
            return shared
        self.process = RedisProcess(self.workdir).start()
        return self.process.url()

    def close(self) -> None:
        if self.process is not None:
            self.process.stop()
