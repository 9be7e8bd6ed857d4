"""Fixtures of the console tests: one fake OpenID provider per session, a console world per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console import ConsoleWorld, make_console
from tests.support.oidc_fake import FakeOidc


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[FakeOidc]:
    fake = FakeOidc().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def oidc(oidc_provider: FakeOidc) -> FakeOidc:
    oidc_provider.reset()
    return oidc_provider


@pytest.fixture
def console(db_url: str, tmp_path: Path, oidc: FakeOidc) -> Iterator[ConsoleWorld]:
    world = make_console(db_url, tmp_path, oidc)
    yield world
    world.close()


@pytest.fixture
def console_sqlite(sqlite_url: str, tmp_path: Path, oidc: FakeOidc) -> Iterator[ConsoleWorld]:
    world = make_console(sqlite_url, tmp_path, oidc)
    yield world
    world.close()
