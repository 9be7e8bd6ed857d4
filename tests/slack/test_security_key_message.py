"""The approvers' message says when a role's approvals are confirmed with a security key (and not otherwise)."""

from __future__ import annotations

import copy
import json

from service.catalog import parse_catalog
from service.slack import views
from tests.slack.conftest import CATALOG
from tests.slack.test_views import request


def test_the_approvers_message_says_a_key_confirms_each_approval() -> None:
    raw = copy.deepcopy(CATALOG)
    plain = parse_catalog(copy.deepcopy(raw))
    next(r for r in raw["roles"] if r["id"] == "ops-admin")["require_security_key"] = True
    keyed = parse_catalog(raw)
    _, blocks = views.approver_message(request(), keyed, [])
    assert "each confirmed with a security key" in json.dumps(blocks)
    _, blocks = views.approver_message(request(), plain, [])
    assert "security key" not in json.dumps(blocks)
