"""Migrations run on databases that already hold data, on SQLite (foreign keys on) and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from service.store.db import alembic_config, make_engine

NOW = "2026-11-23 12:00:00+00:00"


def test_0003_adds_client_tokens_to_a_database_with_requests_and_approvals(db_url: str) -> None:
    cfg = alembic_config(db_url)
    command.upgrade(cfg, "0002")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO requests (id, role_id, requester, principal_arn, duration_seconds, state, created_at, "
            "break_glass, reminders_sent, version) VALUES (1, 'ops-read', 'U0ALICE01', "
            "'arn:aws:iam::123456789012:user/alice', 3600, 'pending', :now, false, 0, 0)"), {"now": NOW})
        conn.execute(text("INSERT INTO approvals (request_id, approver, vote, created_at) "
                          "VALUES (1, 'U0APPR01', 'approve', :now)"), {"now": NOW})
    engine.dispose()

    command.upgrade(cfg, "head")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT requester, client_token FROM requests")).all() == [("U0ALICE01", None)]
        assert conn.execute(text("SELECT approver, client_token FROM approvals")).all() == [("U0APPR01", None)]
        conn.execute(text("UPDATE requests SET client_token = 'trigger-1' WHERE id = 1"))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO requests (id, role_id, requester, principal_arn, duration_seconds, state, created_at, "
            "break_glass, reminders_sent, version, client_token) VALUES (2, 'ops-read', 'U0BOB0001', "
            "'arn:aws:iam::123456789012:user/bob', 3600, 'pending', :now, false, 0, 0, 'trigger-1')"),
            {"now": NOW})
    engine.dispose()

    command.downgrade(cfg, "0002")
    engine = make_engine(db_url)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT count(*) FROM requests")).scalar_one() == 1
        assert conn.execute(text("SELECT count(*) FROM approvals")).scalar_one() == 1
    engine.dispose()
