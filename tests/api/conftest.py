"""The REST API tests' world: the real app on a migrated database (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api import ApiWorld, make_api


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[ApiWorld]:
    w = make_api(db_url, tmp_path)
    yield w
    w.close()
