"""0005: the database itself refuses user text past its cap (SQLite triggers, PostgreSQL CHECKs), on a
database that already holds rows; and it downgrades."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError

from service.store.db import alembic_config, make_engine

NOW = "2026-12-03 12:00:00+00:00"
INSERT = ("INSERT INTO requests (id, role_id, requester, principal_arn, duration_seconds, state, created_at, "
          "break_glass, reminders_sent, version, reason, ticket) VALUES (:id, 'ops-read', 'U0ALICE01', "
          "'arn:aws:iam::123456789012:user/alice', 3600, 'pending', :now, false, 0, 0, :reason, :ticket)")


def test_user_text_past_its_cap_is_refused_by_the_database(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "0004")
    engine = make_engine(db_url)
    with engine.begin() as conn:  # a row from before the caps
        conn.execute(text(INSERT), {"id": 1, "now": NOW, "reason": "r" * 50, "ticket": "INC-1"})
    engine.dispose()
    command.upgrade(cfg, "head")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(INSERT), {"id": 2, "now": NOW, "reason": "r" * 2000, "ticket": "t" * 256})
    for column, value in [("reason", "r" * 2001), ("ticket", "t" * 257)]:
        row = {"id": 3, "now": NOW, "reason": "ok", "ticket": "ok", column: value}
        with pytest.raises((IntegrityError, DataError)), engine.begin() as conn:
            conn.execute(text(INSERT), row)
    for sql in ("UPDATE requests SET decision_note = :v WHERE id = 1", "UPDATE requests SET reason = :v WHERE id = 1"):
        with pytest.raises((IntegrityError, DataError)), engine.begin() as conn:
            conn.execute(text(sql), {"v": "n" * 2001})
    with pytest.raises((IntegrityError, DataError)), engine.begin() as conn:
        conn.execute(text("INSERT INTO approvals (request_id, approver, vote, created_at, note) "
                          "VALUES (1, 'U0APPR01', 'deny', :now, :note)"), {"now": NOW, "note": "n" * 2001})
    with engine.begin() as conn:
        assert conn.execute(text("SELECT id FROM requests ORDER BY id")).scalars().all() == [1, 2]
    engine.dispose()

    command.downgrade(cfg, "0004")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(INSERT), {"id": 4, "now": NOW, "reason": "r" * 2001, "ticket": "INC-4"})
    engine.dispose()
