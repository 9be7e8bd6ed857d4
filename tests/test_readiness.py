"""/readyz says ready only when the database is at the schema this code needs (Alembic's head), with the
reason and what to run otherwise; a SQLite database with no schema yet is created at the first start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from service.api.health import code_heads
from service.operations.context import RecordingDispatcher
from service.settings import Settings
from service.store.db import alembic_config, migrate
from tests.api import CATALOG


@contextmanager
def web(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Any]:
    from service.app import create_app
    from service.runtime import build_runtime

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    settings = Settings(database_url=db_url, redis_url=redis_url, catalog_path=catalog, log_level="WARNING")
    runtime = build_runtime(settings, dispatch=RecordingDispatcher())
    try:
        yield create_app(settings, runtime=runtime).test_client()
    finally:
        runtime.engine.dispose()


def head() -> str:
    (only,) = code_heads()
    return only


def test_ready_at_the_head(db_url: str, redis_url: str, tmp_path: Path) -> None:
    migrate(db_url)
    with web(db_url, redis_url, tmp_path) as client:
        ready = client.get("/readyz")
    assert (ready.status_code, ready.json) == (200, {"status": "ok", "checks": {"database": "ok", "broker": "ok"}})


def test_not_ready_on_an_older_schema_with_the_reason(db_url: str, redis_url: str, tmp_path: Path) -> None:
    command.upgrade(alembic_config(db_url), "0002")  # a deploy whose `keyturn db upgrade` did not run
    with web(db_url, redis_url, tmp_path) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json["status"] == "unavailable"
        assert ready.json["checks"] == {
            "broker": "ok",
            "database": f"not migrated: the schema is at 0002, the code needs {head()} "
                        "(run `keyturn db upgrade` with this code)"}
        migrate(db_url)
        assert client.get("/readyz").status_code == 200  # read at each check, not at start


def test_not_ready_on_an_empty_postgresql_database(postgres_url: str, redis_url: str, tmp_path: Path) -> None:
    with web(postgres_url, redis_url, tmp_path) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["checks"]["database"] == \
        f"not migrated: no schema, the code needs {head()} (run `keyturn db upgrade`)"


def test_a_new_sqlite_database_is_created_at_the_head_on_first_start(sqlite_url: str, redis_url: str,
                                                                      tmp_path: Path) -> None:
    with web(sqlite_url, redis_url, tmp_path) as client:
        assert client.get("/readyz").status_code == 200
    engine = create_engine(sqlite_url)
    try:
        assert {"requests", "grants", "audit_events", "alembic_version"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("current", [frozenset(), frozenset({"0002"}), frozenset({"0002", "0003"})])
def test_any_schema_but_the_head_is_named_with_what_to_run(current: frozenset[str]) -> None:
    from service.api.health import schema_problem

    problem = schema_problem(current, code_heads())
    assert problem is not None and "keyturn db upgrade" in problem
    assert schema_problem(code_heads(), code_heads()) is None
