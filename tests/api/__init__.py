"""Shared by the REST API tests: a catalogue, people with API tokens, and the real app on a migrated database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ALICE, BOB, CAROL, EVE, ADMIN = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0EVE0001", "U0ADMIN01"
TOKENS = {"alice-token-0123456789": ALICE, "bob-token-0123456789": BOB, "carol-token-0123456789": CAROL,
          "eve-token-0123456789": EVE, "admin-token-0123456789": ADMIN}

CATALOG = """
settings:
  admins: [U0ADMIN01]
  max_pending_per_person: 20
accounts:
  - id: "123456789012"
    alias: moto
principals:
  U0ALICE01: arn:aws:iam::123456789012:user/alice
  U0BOB0001: arn:aws:iam::123456789012:user/bob
  U0EVE0001: arn:aws:iam::123456789012:user/eve
roles:
  - id: prod-admin
    name: Prod admin
    account: moto
    role_name: ProdAdmin
    path: /keyturn/
    approvers: [U0BOB0001, U0CAROL01]
    max_duration: 4h
  - id: read-only
    name: Read only
    account: moto
    role_name: ReadOnly
    path: /keyturn/
    auto_approve: true
    require_reason: false
  - id: break-glass
    name: Break glass
    account: moto
    role_name: BreakGlass
    path: /keyturn/
    approvers: [U0BOB0001]
    allow_self_approval: true
"""


def bearer(user: str) -> dict[str, str]:
    token = next(t for t, u in TOKENS.items() if u == user)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiWorld:
    app: Any
    runtime: Any
    dispatch: Any

    @property
    def client(self) -> Any:
        return self.app.test_client()

    def close(self) -> None:
        self.runtime.engine.dispose()


def make_api(db_url: str, tmp_path: Path, *, redis_url: str | None = None) -> ApiWorld:
    """create_app on a migrated database, with a RecordingDispatcher instead of Celery."""
    from service.app import create_app
    from service.operations.context import RecordingDispatcher
    from service.runtime import build_runtime
    from service.settings import Settings
    from service.store.db import migrate

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(CATALOG)
    migrate(db_url)
    settings = Settings(database_url=db_url, catalog_path=catalog, api_tokens=dict(TOKENS))
    if redis_url:
        settings = replace(settings, redis_url=redis_url)
    dispatch = RecordingDispatcher()
    runtime = build_runtime(settings, dispatch=dispatch)
    return ApiWorld(create_app(settings, runtime=runtime), runtime, dispatch)
