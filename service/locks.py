"""Per-target locks that serialise read-modify-write of one IAM document across workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol


class LockBusy(Exception):
    """Another worker holds the target; try again shortly."""


class Locks(Protocol):
    def hold(self, key: str) -> Any: ...


class RedisLocks:
    """Redis locks with a timeout, so a worker killed mid-sync frees its target after `timeout` seconds."""

    def __init__(self, redis_client: Any, *, timeout: float = 30.0, wait: float = 10.0):
        self.redis, self.timeout, self.wait = redis_client, timeout, wait

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        lock = self.redis.lock(f"keyturn:lock:{key}", timeout=self.timeout, blocking_timeout=self.wait)
        if not lock.acquire(blocking=True):
            raise LockBusy(key)
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # noqa: S110 - expired or lost: the next holder's sync repeats the work anyway
                pass


class LocalLocks:
    """In-process locks for a single process (CLI inline mode, unit tests)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield
