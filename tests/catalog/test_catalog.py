"""The catalogue loader: the example loads, and every mistake is reported with its path."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.catalog import CatalogError, Strategy, load_catalog, parse_catalog

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "catalog.example.yaml"
BAD = Path(__file__).resolve().parent / "bad"
RAW = yaml.safe_load(EXAMPLE.read_text())

Mutation = Callable[[dict[str, Any]], None]


def errors_for(mutate: Mutation) -> list[str]:
    raw = copy.deepcopy(RAW)
    mutate(raw)
    with pytest.raises(CatalogError) as info:
        parse_catalog(raw)
    return info.value.errors


def _role(i: int, **changes: Any) -> Mutation:
    return lambda raw: raw["roles"][i].update(changes)


def _drop(i: int, key: str) -> Mutation:
    return lambda raw: raw["roles"][i].pop(key)


# ---- the example ---------------------------------------------------------------------------------
def test_example_catalogue_loads() -> None:
    catalog = load_catalog(EXAMPLE)
    assert set(catalog.accounts) == {"111111111111", "222222222222"}
    assert sorted(catalog.roles) == ["prod-admin", "prod-billing", "prod-readonly"]
    assert catalog.admins == frozenset({"U0ADMIN01"})
    assert catalog.request_timeout == timedelta(hours=2)
    assert catalog.principals["U0ALICE01"] == "arn:aws:iam::111111111111:user/alice"
    assert catalog.principals.get("U0NOBODY") is None


def test_example_roles_are_resolved() -> None:
    catalog = load_catalog(EXAMPLE)
    admin, readonly = catalog.roles["prod-admin"], catalog.roles["prod-readonly"]
    assert admin.account == "222222222222"  # alias resolved to the id
    assert admin.arn == "arn:aws:iam::222222222222:role/keyturn/Admin"
    assert admin.path_and_name == "keyturn/Admin"
    assert admin.strategy is Strategy.TRUST_POLICY and admin.color == "B7CA9D"
    assert readonly.strategy is Strategy.GROUP_MEMBERSHIP and readonly.group == "keyturn-prod-readonly"
    assert readonly.max_duration == timedelta(days=1)
    assert readonly.require_reason is False
    rules = admin.rules()
    assert rules.approvers == frozenset({"U0BOB0001", "U0CAROL01"}) and rules.approver_groups == frozenset()
    assert [r.id for r in catalog.roles_for("U0ALICE01")] == ["prod-admin", "prod-billing", "prod-readonly"]
    assert catalog.roles_for("U0NOBODY") == []


def test_user_group_approvers_become_approver_groups() -> None:
    raw = copy.deepcopy(RAW)
    raw["roles"][0]["approvers"] = ["U0BOB0001", "S0OPS0001"]
    raw["roles"][0]["min_approvals"] = 3  # a group can supply more approvers than listed users
    rules = parse_catalog(raw).roles["prod-admin"].rules()
    assert rules.approvers == frozenset({"U0BOB0001"})
    assert rules.approver_groups == frozenset({"S0OPS0001"})
    assert rules.min_approvals == 3


def test_auto_approve_allows_empty_approvers() -> None:
    catalog = parse_catalog(copy.deepcopy(RAW) | {"roles": [RAW["roles"][0] | {"approvers": [], "auto_approve": True}]})
    assert catalog.roles["prod-admin"].auto_approve is True
    assert catalog.roles["prod-admin"].approvers == frozenset()


# ---- one mistake at a time ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        pytest.param(lambda r: r["accounts"][1].update(id="22222222222"), "accounts[1].id", "12-digit",
                     id="account-id-11-digits"),
        pytest.param(lambda r: r["accounts"][1].update(id="2222222222ab"), "accounts[1].id", "12-digit",
                     id="account-id-not-digits"),
        pytest.param(lambda r: r["accounts"][0].update(id=111111111111), "accounts[0].id", "quoted",
                     id="account-id-unquoted"),
        pytest.param(_role(1, path="/" + "p" * 50 + "/", role_name="R" * 20), "roles[1].path", "64",
                     id="path-and-name-over-64"),
        pytest.param(_role(1, default_duration="2d"), "roles[1].default_duration", "longer than max_duration",
                     id="default-longer-than-max"),
        pytest.param(_role(0, approvers=[]), "roles[0].approvers", "auto_approve", id="approvers-empty"),
        pytest.param(_drop(2, "approvers"), "roles[2].approvers", "auto_approve", id="approvers-missing"),
        pytest.param(_role(1, account="333333333333"), "roles[1].account", "'333333333333' is not in accounts",
                     id="unknown-account"),
        pytest.param(_role(2, id="prod-admin"), "roles[2].id", "duplicate role id 'prod-admin'",
                     id="duplicate-role-id"),
        pytest.param(lambda r: r["accounts"][1].update(id="111111111111"), "accounts[1].id",
                     "duplicate account id", id="duplicate-account-id"),
        pytest.param(lambda r: r["accounts"].append({"id": "333333333333", "alias": "identity"}),
                     "accounts[2].alias", "duplicate account id or alias 'identity'", id="duplicate-alias"),
        pytest.param(lambda r: r["accounts"].append({"id": "333333333333", "alias": "111111111111"}),
                     "accounts[2].alias", "duplicate account id or alias '111111111111'", id="alias-equals-an-id"),
        pytest.param(_role(1, max_duration="2x"), "roles[1].max_duration", "'2x' is not a duration",
                     id="bad-duration"),
        pytest.param(_role(0, default_duration="0m"), "roles[0].default_duration", "longer than zero",
                     id="zero-duration"),
        pytest.param(_role(1, colour="red"), "roles[1].colour", "is not a known field", id="unknown-role-field"),
        pytest.param(lambda r: r.update(groups=[]), "groups", "is not a known field", id="unknown-top-field"),
        pytest.param(lambda r: r["settings"].update(timeout="1h"), "settings.timeout", "is not a known field",
                     id="unknown-settings-field"),
        pytest.param(lambda r: r.setdefault("principals", {}).update(U0DAVE001="dave"), "principals.U0DAVE001",
                     "must be an IAM user ARN", id="principal-not-an-arn"),
        pytest.param(lambda r: r.setdefault("principals", {}).update(dave="arn:aws:iam::111111111111:user/dave"),
                     "principals.dave", "Slack user id", id="principal-key-not-a-slack-user"),
        pytest.param(_role(1, min_approvals=2), "roles[1].min_approvals", "needs 2 distinct approvers but only 1",
                     id="min-approvals-above-approvers"),
        pytest.param(_drop(1, "group"), "roles[1].group", "required for strategy group_membership",
                     id="group-membership-without-group"),
        pytest.param(_drop(0, "role_name"), "roles[0].role_name", "is required", id="missing-required-field"),
        pytest.param(_role(0, approvers=["bob"]), "roles[0].approvers[0]", "Slack user", id="approver-not-slack-id"),
        pytest.param(lambda r: r.update(roles=[]), "roles", "minimum length 1", id="no-roles"),
    ],
)
def test_each_mistake_is_reported_with_its_path(mutate: Mutation, path: str, fragment: str) -> None:
    errors = errors_for(mutate)
    assert len(errors) == 1, errors
    where, _, message = errors[0].partition(": ")
    assert where == path
    assert fragment in message


def test_a_bad_approver_is_not_also_reported_as_empty_approvers() -> None:
    expected = "roles[0].approvers[0]: must be a Slack user (U…) or user-group (S…) id"
    assert errors_for(_role(0, approvers=["bob"])) == [expected]


def test_a_catalogue_that_is_not_a_mapping() -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(["roles"])
    assert info.value.errors[0].startswith("(top): ")


# ---- everything at once, and files -----------------------------------------------------------------
def test_every_error_in_a_file_is_listed() -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(BAD / "many_errors.yaml")
    paths = [e.partition(": ")[0] for e in info.value.errors]
    assert sorted(paths) == sorted([
        "settings.admins[0]",
        "accounts[0].id",
        "principals.U0ALICE01",
        "roles[0].max_duration",
        "roles[1].id",
        "roles[1].account",
        "roles[1].approvers",
        "roles[1].colour",
    ])
    assert len(set(info.value.errors)) == len(info.value.errors)
    text = str(info.value)
    assert text.startswith("invalid catalogue:") and "duplicate role id 'prod-admin'" in text


def test_yaml_syntax_error_reports_a_line_number() -> None:
    with pytest.raises(CatalogError) as info:
        load_catalog(BAD / "syntax.yaml")
    (error,) = info.value.errors
    assert error.startswith("line 6, ") and "not valid YAML" in error


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(CatalogError) as info:
        load_catalog(missing)
    assert info.value.errors == [f"{missing}: cannot read: No such file or directory"]


# ---- identities --------------------------------------------------------------------------------------------
def _with(identities: list[dict[str, Any]] | None = None, principals: dict[str, str] | None = None) -> Mutation:
    def mutate(raw: dict[str, Any]) -> None:
        raw["identities"] = raw.get("identities", []) + (identities or [])
        if principals is not None:
            raw["principals"] = principals
    return mutate


SSO = {"slack": "U0ZOE0001", "kind": "sso_user", "user_name": "zoe@example.com",
       "permission_sets": [{"account": "identity", "permission_set": "Engineer"}]}


@pytest.mark.parametrize(("mutate", "where", "fragment"), [
    pytest.param(_with(principals={"U0ZOE0001": "arn:aws:iam::111111111111:role/AWSReservedSSO_Admin_0123"}),
                 "principals.U0ZOE0001", "kind: sso_user", id="role-arn-as-principal"),
    pytest.param(_with(principals={"U0ZOE0001": "arn:aws:iam::111111111111:user/ålice"}),
                 "principals.U0ZOE0001", "ASCII", id="unicode-user"),
    pytest.param(_with(principals={"U0ZOE0001": "arn:aws:iam::111111111111:user/alice\n"}),
                 "principals.U0ZOE0001", "ASCII", id="trailing-newline"),
    pytest.param(_with(principals={"U0ZOE0001": "arn:aws:iam::111111111111:user/a"}),
                 "principals.U0ZOE0001", "2-64", id="one-character-user"),
    pytest.param(_with([{**SSO, "user_name": "z"}]), "identities[0].user_name", "2-64", id="short-session-name"),
    pytest.param(_with([{**SSO, "kind": "iam_role"}]), "identities[0].role_arn", "is required for kind iam_role",
                 id="kind-fields-missing"),
    pytest.param(_with([{**SSO, "arn": "arn:aws:iam::111111111111:user/zoe"}]), "identities[0].arn",
                 "is not used by kind sso_user", id="field-of-another-kind"),
    pytest.param(_with([{**SSO, "permission_sets": [{"account": "nowhere", "permission_set": "X"}]}]),
                 "identities[0].permission_sets[0].account", "not in accounts", id="unknown-account"),
    pytest.param(_with([{**SSO, "permission_sets": [{"permission_set": "X"}]}]),
                 "identities[0].permission_sets[0]", "both account and permission_set", id="half-a-permission-set"),
    pytest.param(_with([{"slack": "U0ZOE0001", "kind": "iam_user", "arn": "arn:aws:iam::111111111111:user/alice"}]),
                 "identities[0].slack", "cannot share one AWS identity", id="two-slack-ids-one-person"),
    pytest.param(_with([{"slack": "U0ALICE01", "kind": "iam_user", "arn": "arn:aws:iam::111111111111:user/zed"}]),
                 "identities[0].slack", "one entry per Slack user", id="one-slack-id-twice"),
    pytest.param(_with([{"slack": "U0ZOE0001", "kind": "iam_user", "arn": "arn:aws:iam::222222222222:user/alice"}]),
                 "identities[0].session_name", "could not be told apart", id="alice-in-two-accounts"),
    pytest.param(_with([{**SSO, "user_name": "ALICE"}]), "identities[0].session_name", "could not be told apart",
                 id="session-names-differ-only-in-case"),
])
def test_identity_mistakes_are_reported_with_their_path(mutate: Mutation, where: str, fragment: str) -> None:
    errors = errors_for(mutate)
    where = where.replace("identities[0]", f"identities[{len(RAW['identities'])}]")  # appended after the example's
    assert any(e.startswith(f"{where}:") and fragment in e for e in errors), errors


def test_identities_load_with_their_kind_and_key() -> None:
    catalog = load_catalog(EXAMPLE)
    dana = catalog.identities["U0DANA001"]
    assert dana.key == "sso_user:dana@example.com" and dana.session_name == "dana@example.com"
    assert dana.roles[0].account == "111111111111" and dana.roles[0].permission_set == "Engineer"
    assert catalog.identities["U0ALICE01"].key == "arn:aws:iam::111111111111:user/alice"
    assert "U0DANA001" not in catalog.principals  # the derived view holds IAM users only
