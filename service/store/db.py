"""Engines and sessions for SQLite (default) and PostgreSQL; migrations run through Alembic."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.logs import request_id_var

PENDING_AUDIT_LOGS = "keyturn_pending_audit_logs"
audit_log = logging.getLogger("keyturn.audit")

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine with the settings Keyturn's compare-and-set transitions rely on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, start transactions, so that BEGIN IMMEDIATE below takes
            # the write lock up front: no read-then-upgrade deadlocks between concurrent workers.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_commit", _log_committed_audits)
    event.listen(factory, "after_rollback", _drop_pending_audits)
    return factory


def _log_committed_audits(session: Session) -> None:
    """One structured log line per audit event, only once its transaction is committed (never a rolled-back one)."""
    for fields in session.info.pop(PENDING_AUDIT_LOGS, []):  # request_id: the HTTP request, if any
        audit_log.info(fields.pop("action"), extra={**fields, "request_id": request_id_var.get()})


def _drop_pending_audits(session: Session) -> None:
    session.info.pop(PENDING_AUDIT_LOGS, None)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def migrate(url: str) -> None:
    """Bring the database at `url` to the newest schema."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")
