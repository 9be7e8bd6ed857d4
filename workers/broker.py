"""The Redis broker transport, with one Redis client per channel instead of one per publish.

kombu's Redis channel builds a new `redis.Redis` object for every message it publishes (`conn_or_acquire`);
all of them share the channel's connection pool, so the object itself is pure overhead: building it (its
table of ~170 response callbacks) was a third of the CPU of a Slack acknowledgement, which publishes one
task (bench/RESULTS.md, benchmark 1). Here the channel builds that client once and reuses it. A redis-py
client is safe to share between threads and checks its pool after a fork, and it is the same pool as before,
so nothing else changes: same queues, same messages, same acks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        if self._shared_client is None:
            self._shared_client = self._create_client()
        yield self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel

