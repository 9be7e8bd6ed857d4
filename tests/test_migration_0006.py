"""0006: the security-key tables, on SQLite and PostgreSQL: as the models say, one credential id once, and
gone again on downgrade."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from service.store.db import alembic_config, make_engine
from service.store.models import Base

TABLES = ("security_keys", "security_key_challenges")
ROW = ("INSERT INTO security_keys (user_id, team_id, credential_id, public_key, sign_count, label, created_at) "
       "VALUES (:user, 'T0KEYTURN', 'cred-1', :key, 0, 'yubikey', '2026-12-02 12:00:00+00:00')")


def test_0006_creates_the_tables_as_the_models_say_and_downgrades(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "head")
    engine = make_engine(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if any(t in repr(d) for t in TABLES)] == []
    with engine.begin() as conn:
        conn.execute(text(ROW), {"user": "U0ALICE01", "key": b"\xa5\x01\x02"})
    with pytest.raises(IntegrityError), engine.begin() as conn:  # one credential belongs to one person
        conn.execute(text(ROW), {"user": "U0BOB0001", "key": b"\x00"})
    engine.dispose()
    command.downgrade(cfg, "0005")
    engine = make_engine(db_url)
    assert not set(TABLES) & set(inspect(engine).get_table_names())
    engine.dispose()
