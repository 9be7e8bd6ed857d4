"""/healthz (the process is up) and /readyz (the database answers at the schema this code needs, the broker
answers); and the SQLite default's schema, created on first start."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from flask import Flask, Response, jsonify
from sqlalchemy import text

log = logging.getLogger(__name__)


@cache
def code_heads() -> frozenset[str]:
    """The Alembic head(s) of the migrations shipped with this code (read once, on the first readiness check)."""
    from alembic.script import ScriptDirectory

    from service.store.db import alembic_config

    return frozenset(ScriptDirectory.from_config(alembic_config("")).get_heads())


def database_heads(conn: Any) -> frozenset[str]:
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(conn).get_current_heads())


def schema_problem(current: frozenset[str], needed: frozenset[str]) -> str | None:
    """Why the schema is not the one this code needs, with what to do; None when it is."""
    if current == needed:
        return None
    wanted = ", ".join(sorted(needed))
    if not current:
        return f"not migrated: no schema, the code needs {wanted} (run `keyturn db upgrade`)"
    return f"not migrated: the schema is at {', '.join(sorted(current))}, the code needs {wanted} " \
           "(run `keyturn db upgrade` with this code)"


def create_sqlite_schema(engine: Any, url: str) -> None:
    """A SQLite database with no schema yet (a first start) is created at the head; any other database is
    migrated by `keyturn db upgrade` (readiness says so). Two processes starting at once are serialised by
    SQLite's write lock (BEGIN IMMEDIATE, service/store/db.py): the second finds the schema made."""
    if not url.startswith("sqlite"):
        return
    with engine.connect() as conn:
        if database_heads(conn):
            return
    from service.store.db import migrate

    log.warning("the SQLite database has no schema: creating it (first start)")
    migrate(url)


def register_health(app: Flask, engine_of: Any, redis: Any) -> None:
    """`engine_of()` gives the engine to check (the runtime's, read at each request)."""

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        """The process is up."""
        return jsonify(status="ok"), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """The database answers at the schema this code needs, and the broker answers."""
        checks: dict[str, str] = {}
        try:
            with engine_of().connect() as conn:
                conn.execute(text("SELECT 1"))
                current = database_heads(conn)
            checks["database"] = schema_problem(current, code_heads()) or "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            redis.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
