"""Throwaway PostgreSQL databases on a real server: one per session, and a fresh one per test."""

from __future__ import annotations

import itertools
import os
import secrets
import threading
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def pg_admin_url() -> str:
    return os.environ.get("KEYTURN_TEST_PG_URL") or DEFAULT_PG_URL


def skip_postgres() -> bool:
    return os.environ.get("KEYTURN_SKIP_POSTGRES", "").strip().lower() in {"1", "true", "yes"}


def with_database(url: str, name: str) -> str:
    """The same server URL (user, password, host, query) pointing at database `name`."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def unreachable_message(url: str, error: Exception) -> str:
    return (
        f"PostgreSQL is not reachable at {url} ({error.__class__.__name__}: {error}). The database tests run "
        "on SQLite AND PostgreSQL. Start a server (e.g. `apt-get install postgresql` and "
        "`service postgresql start`, or `docker run -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres`), "
        "point KEYTURN_TEST_PG_URL=postgresql://user:pass@host:port/db at one, "
        "or set KEYTURN_SKIP_POSTGRES=1 to skip the postgresql cases."
    )


class PostgresServer:
    """A reachable server plus the databases this session created on it (all dropped by close())."""

    def __init__(self, admin_url: str | None = None) -> None:
        self.admin_url = admin_url or pg_admin_url()
        self._admin = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.prefix = f"keyturn_test_{secrets.token_hex(4)}"
        self._created: list[str] = []
        self.session_db = self.prefix
        self._create(self.session_db)

    @property
    def session_url(self) -> str:
        """The session's own throwaway database (shared by every test that uses it)."""
        return with_database(self.admin_url, self.session_db)

    def _create(self, name: str) -> None:
        with self._lock:
            self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            self._created.append(name)

    def create_database(self) -> str:
        """A brand-new empty database; returns its postgresql:// URL."""
        name = f"{self.prefix}_{next(self._counter)}"
        self._create(name)
        return with_database(self.admin_url, name)

    def drop_database(self, url_or_name: str) -> None:
        """Drop it even if connections are still open (engines, worker processes): WITH (FORCE)."""
        name = urlsplit(url_or_name).path.lstrip("/") if "://" in url_or_name else url_or_name
        with self._lock:
            self._admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if name in self._created:
                self._created.remove(name)

    def close(self) -> None:
        for name in list(reversed(self._created)):
            try:
                self.drop_database(name)
            except psycopg.Error:
                pass
        self._admin.close()
