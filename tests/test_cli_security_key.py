"""The CLI cannot approve a role whose approvals need a security key (the console's confirm page does), nor
a break-glass self-approval that needs one; a deny still works."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api import ALICE, BOB
from tests.console.test_security_keys import KEYED_CATALOG
from tests.test_cli import _ok, _refused, cli_env  # noqa: F401  (cli_env: a fixture)


def test_the_cli_cannot_approve_a_keyed_role(cli_env: str, tmp_path: Path,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    catalog = tmp_path / "keyed.yaml"
    catalog.write_text(KEYED_CATALOG)
    monkeypatch.setenv("KEYTURN_CATALOG", str(catalog))
    assert _ok("request", "prod-keyed", "1h", "INC-9", "--as", ALICE).strip() == "request 1: pending"
    assert "refused (security_key_required): Approvals of this role must be confirmed with a security key" in \
        _refused("approve", "1", "--as", BOB)
    assert _ok("request", "glass-keyed", "1h", "INC-10", "--as", ALICE).strip() == "request 2: pending"
    assert "refused (security_key_required)" in _refused("approve", "2", "--as", ALICE, "--note", "3am pager")
    assert len(_ok("grants").splitlines()) <= 1  # no grant was made
    assert _ok("deny", "1", "--as", BOB).strip().startswith("request 1: denied")
