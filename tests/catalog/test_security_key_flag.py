"""The catalogue's security-key flags: loaded into the role's rules, and a break-glass flag without
break-glass refused."""

from __future__ import annotations

import copy

import pytest

from service.catalog import CatalogError, parse_catalog
from tests.catalog.test_catalog import RAW


def _with(**changes: object) -> dict[str, object]:
    raw = copy.deepcopy(RAW)
    raw["roles"][0].update(changes)
    return raw


def test_flags_default_off_and_load_into_the_rules() -> None:
    plain = parse_catalog(copy.deepcopy(RAW)).roles[RAW["roles"][0]["id"]].rules()
    assert (plain.require_security_key, plain.break_glass_requires_security_key) == (False, False)
    keyed = parse_catalog(_with(require_security_key=True)).roles[RAW["roles"][0]["id"]].rules()
    assert keyed.require_security_key and not keyed.break_glass_requires_security_key
    glass = parse_catalog(_with(allow_self_approval=True, break_glass_requires_security_key=True))
    assert glass.roles[RAW["roles"][0]["id"]].rules().break_glass_requires_security_key


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"require_security_key": "maybe"}, "require_security_key: Not a valid boolean"),
    ({"break_glass_requires_security_key": True, "allow_self_approval": False},
     "break_glass_requires_security_key: needs allow_self_approval: true"),
    # auto_approve files it approved with no vote at all: the key would never be asked for
    ({"require_security_key": True, "auto_approve": True},
     "require_security_key: cannot be combined with auto_approve"),
    ({"break_glass_requires_security_key": True, "allow_self_approval": True, "auto_approve": True},
     "break_glass_requires_security_key: cannot be combined with auto_approve"),
])
def test_mistakes_are_reported(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(_with(**changes))
    assert any(fragment in e for e in info.value.errors), info.value.errors
