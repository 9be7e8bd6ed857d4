"""Real subprocesses for tests (Celery worker, beat, the web app), with logs and crash controls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ManagedProcess:
    """One subprocess in its own process group, stdout+stderr appended to `log_path`.

    `env` entries are laid over a copy of os.environ (pass `inherit_env=False` for exactly `env`).
    Its own group means `kill()` also takes down children (Celery's prefork pool).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | str = REPO_ROOT,
        inherit_env: bool = True,
        name: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.name = name or Path(self.argv[0]).name
        self.cwd = Path(cwd)
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def _signal_group(self, sig: int) -> None:
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the main process (a Celery warm shutdown), SIGKILL the group after `timeout`."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._proc.wait(10)
        self._signal_group(signal.SIGKILL)  # reap stragglers (pool children) left in the group
        return self._proc.returncode

    def kill(self) -> int | None:
        """SIGKILL the whole group at once: a crash, no cleanup, tasks in flight are lost."""
        if self._proc is None:
            return None
        self._signal_group(signal.SIGKILL)
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
        return self._proc.returncode

    def restart(self, timeout: float = 10.0) -> ManagedProcess:
        self.stop(timeout)
        return self.start()

    def wait(self, timeout: float | None = None) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._proc.wait(timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 30.0, start_at: int = 0) -> re.Match[str]:
        """Poll the log until regex `pattern` appears (after char `start_at`); fail with the log tail."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text(), start_at)
            if match:
                return match
            if not self.alive:
                raise AssertionError(f"{self.name} exited ({self.returncode}) before /{pattern}/:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"/{pattern}/ not in {self.name}'s log after {timeout}s:\n{self.tail()}")
            time.sleep(0.1)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"exited {self.returncode}"
        return f"<ManagedProcess {self.name} pid={self.pid} {state}>"


class ProcessRegistry:
    """Backs the `spawn` fixture: start processes, stop every one of them at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.processes: list[ManagedProcess] = []

    def __call__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        name: str | None = None,
        cwd: Path | str = REPO_ROOT,
        inherit_env: bool = True,
    ) -> ManagedProcess:
        label = name or Path(str(argv[0])).name
        log = self.log_dir / f"{len(self.processes):02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', label)}.log"
        proc = ManagedProcess(argv, log, env=env, cwd=cwd, inherit_env=inherit_env, name=label)
        self.processes.append(proc)
        return proc.start()

    def stop_all(self, timeout: float = 5.0) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout)
