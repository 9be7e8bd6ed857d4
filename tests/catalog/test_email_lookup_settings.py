"""settings.email_lookup: off unless written; when written, validated with marshmallow and every mistake
reported with its path, as `keyturn config check` prints it."""

from __future__ import annotations

import copy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from service.catalog import CatalogError, parse_catalog
from service.cli import main
from service.core.identity import SignInRole

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "catalog.example.yaml"
CENTER = {"instance_arn": "arn:aws:sso:::instance/ssoins-0123456789abcdef", "identity_store_id": "d-0123456789"}
PS_ARN = "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0123456789abcdef"


def _raw(lookup: Any, center: Any = CENTER) -> dict[str, Any]:
    raw = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    if center is not None:
        raw["settings"]["identity_center"] = dict(center)
    raw["settings"]["email_lookup"] = lookup
    return raw


def _errors(lookup: Any, center: Any = CENTER) -> list[str]:
    with pytest.raises(CatalogError) as info:
        parse_catalog(_raw(lookup, center))
    return info.value.errors


def test_off_unless_written() -> None:
    assert parse_catalog(yaml.safe_load(EXAMPLE.read_text())).email_lookup is None


def test_on_with_permission_sets_by_name_and_by_arn() -> None:
    catalog = parse_catalog(_raw({"permission_sets": [{"account": "prod", "permission_set": "Admin"},
                                                      {"arn": PS_ARN}], "max_age": "5m"}))
    lookup = catalog.email_lookup
    assert lookup is not None
    assert lookup.roles == (SignInRole(account="222222222222", permission_set="Admin"),
                            SignInRole(account="222222222222", arn=PS_ARN))
    assert lookup.max_age == timedelta(minutes=5)
    assert lookup.max_entries == 10_000


def test_defaults() -> None:
    lookup = parse_catalog(_raw({"permission_sets": [{"arn": PS_ARN}]})).email_lookup
    assert lookup is not None and lookup.max_age == timedelta(minutes=10)


@pytest.mark.parametrize(("lookup", "expected"), [
    ({}, "settings.email_lookup.permission_sets: is required"),
    ({"permission_sets": []}, "settings.email_lookup.permission_sets: list 1 to 10 permission sets"),
    ({"permission_sets": [{"account": "nope", "permission_set": "Admin"}]},
     "settings.email_lookup.permission_sets[0].account: account 'nope' is not in accounts"),
    ({"permission_sets": [{"account": "prod", "permission_set": "Admin", "arn": PS_ARN}]},
     "settings.email_lookup.permission_sets[0]: give either arn, or account and permission_set"),
    ({"permission_sets": [{"account": "prod"}]},
     "settings.email_lookup.permission_sets[0]: give both account and permission_set"),
    ({"permission_sets": [{"arn": PS_ARN}], "max_age": "0s"}, "settings.email_lookup.max_age: '0s' must be"),
    ({"permission_sets": [{"arn": PS_ARN}], "max_age": "2d"}, "settings.email_lookup.max_age: must be between"),
    ({"permission_sets": [{"arn": PS_ARN}], "max_age": "soon"}, "settings.email_lookup.max_age: 'soon' is not"),
    ({"permission_sets": [{"arn": PS_ARN}], "max_entries": 0}, "settings.email_lookup.max_entries: Must be"),
    ({"permission_sets": [{"arn": PS_ARN}], "fuzzy": True}, "settings.email_lookup.fuzzy: is not a known field"),
    ("yes", "settings.email_lookup: Invalid input type"),
])
def test_each_mistake_is_reported_with_its_path(lookup: Any, expected: str) -> None:
    errors = _errors(lookup)
    assert len(errors) == 1, errors
    assert errors[0].startswith(expected), errors


def test_needs_identity_center() -> None:
    errors = _errors({"permission_sets": [{"arn": PS_ARN}]}, center=None)
    assert errors == ["settings.email_lookup: needs settings.identity_center (its identity store is where people "
                      "are found by email)"]


def test_config_check_explains_the_refusal(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_raw({"permission_sets": [{"account": "nope", "permission_set": "Admin"}]},
                                        center=None)))
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "2 error(s)" in result.output
    assert "settings.email_lookup: needs settings.identity_center" in result.output
    assert "settings.email_lookup.permission_sets[0].account: account 'nope' is not in accounts" in result.output
