"""`keyturn doctor` against moto server: a healthy setup passes, each Switch Role failure is named.

moto gives credentials obtained through sts:AssumeRole the account of the assumed role, so the
catalogue's second account (reached through its manager role, as in production) is a real second
IAM: principals there are genuinely cross-account. Where moto cannot answer (it does not implement
iam:SimulatePrincipalPolicy) the doctor's fallback is what runs; one test wraps the client to answer
the simulation so that path is covered too, and one turns on moto's own IAM authorization to get
real AccessDenied answers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from service.aws.clients import AwsClients
from service.catalog import Catalog, parse_catalog
from service.core.targets import parse_principal
from service.demo.local import seed_iam
from service.doctor.checks import glob, trusts
from service.doctor.run import (
    ACCOUNTS,
    IDENTITIES,
    PRINCIPALS,
    CheckResult,
    Named,
    Status,
    evaluate,
    exit_code,
    render_json,
    render_table,
    run_doctor,
)

A = "123456789012"  # moto's default account: Keyturn's own credentials live here
B = "222222222222"  # reached through its manager role, like a separate identity account
MANAGER_B = f"arn:aws:iam::{B}:role/keyturn-manager"
OPS = f"arn:aws:iam::{A}:role/keyturn/OpsAdmin"
RO = f"arn:aws:iam::{A}:role/keyturn/ReadOnly"
BOB = f"arn:aws:iam::{B}:user/bob"

RAW: dict[str, Any] = {
    "accounts": [{"id": A, "alias": "home"}, {"id": B, "alias": "people", "manager_role_arn": MANAGER_B}],
    "principals": {"U0ALICE01": f"arn:aws:iam::{A}:user/alice", "U0BOB0001": BOB},
    "roles": [
        {"id": "ops-admin", "name": "Ops admin", "account": "home", "role_name": "OpsAdmin", "path": "/keyturn/",
         "strategy": "trust_policy", "approvers": ["U0APPR01"], "max_duration": "4h"},
        {"id": "ro-group", "name": "Read-only", "account": "home", "role_name": "ReadOnly", "path": "/keyturn/",
         "strategy": "group_membership", "group": "keyturn-ro", "approvers": ["U0APPR01"]},
        {"id": "billing-inline", "name": "Billing", "account": "home", "role_name": "Billing", "path": "/keyturn/",
         "strategy": "inline_policy", "approvers": ["U0APPR01"]},
    ],
}


def raw_catalog(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    raw.update(changes)
    return raw


def allow(action: str | list[str], resource: str | list[str], effect: str = "Allow", **extra: Any) -> str:
    return json.dumps({"Version": "2012-10-17",
                       "Statement": [{"Effect": effect, "Action": action, "Resource": resource, **extra}]})


def trust(*accounts: str, **extra: Any) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "People", "Effect": "Allow", "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]},
         "Action": "sts:AssumeRole", **extra}]})


def clients_for(catalog: Catalog, session: Any | None = None) -> AwsClients:
    managers = {a.id: a.manager_role_arn for a in catalog.accounts.values() if a.manager_role_arn}
    return AwsClients(session=session, manager_roles=managers)


class World:
    def __init__(self, raw: dict[str, Any]):
        self.catalog = parse_catalog(raw)
        self.clients = clients_for(self.catalog)
        self.a, self.b = self.clients.iam(A), self.clients.iam(B)

    def run(self, **kwargs: Any) -> list[CheckResult]:
        return run_doctor(self.catalog, self.clients, **kwargs)

    def use(self, raw: dict[str, Any]) -> None:
        self.catalog = parse_catalog(raw)
        self.clients = clients_for(self.catalog)

    def detach_bob(self) -> None:
        arn = f"arn:aws:iam::{B}:policy/assume-ops"
        self.b.detach_group_policy(GroupName="operators", PolicyArn=arn)


def seed_healthy(w: World) -> None:
    """Everything the catalogue names, set up the way README's AWS setup asks."""
    seed_iam(w.a, w.catalog)  # roles, group keyturn-ro and the users, in account A
    w.b.create_user(UserName="bob")
    w.b.create_group(GroupName="keyturn-ro")
    for iam in (w.a, w.b):
        iam.put_group_policy(GroupName="keyturn-ro", PolicyName="assume-ro", PolicyDocument=allow("sts:AssumeRole", RO))
    for name in ("ReadOnly", "Billing"):  # group and inline strategies: the role trusts the people's accounts
        w.a.update_assume_role_policy(RoleName=name, PolicyDocument=trust(A, B))
    # bob (account B) may call sts:AssumeRole on OpsAdmin through a managed policy on one of his groups.
    w.b.create_group(GroupName="operators")
    w.b.add_user_to_group(GroupName="operators", UserName="bob")
    arn = w.b.create_policy(PolicyName="assume-ops", PolicyDocument=allow("sts:AssumeRole", OPS))["Policy"]["Arn"]
    w.b.attach_group_policy(GroupName="operators", PolicyArn=arn)


@pytest.fixture
def world(moto_reset: str) -> World:
    w = World(raw_catalog())
    seed_healthy(w)
    return w


def rows(results: list[CheckResult], role_id: str, check: str) -> list[CheckResult]:
    return [r for r in results if r.role_id == role_id and r.check == check]


def one(results: list[CheckResult], role_id: str, check: str, contains: str = "") -> CheckResult:
    found = [r for r in rows(results, role_id, check) if contains in r.detail]
    assert len(found) == 1, render_table(results)
    return found[0]


def fails(results: list[CheckResult]) -> list[tuple[str, str]]:
    return [(r.role_id, r.check) for r in results if r.status is Status.FAIL]


# ---- a healthy setup -----------------------------------------------------------------------------
def test_healthy_catalogue_passes(world: World) -> None:
    before = world.a.get_role(RoleName="OpsAdmin")["Role"]["AssumeRolePolicyDocument"]
    results = world.run()
    assert fails(results) == [], render_table(results)
    assert exit_code(results) == 0
    for role_id in ("ops-admin", "ro-group", "billing-inline"):
        for check in ("switch-role-name", "role-exists", "external-id", "session-duration", "manager-read"):
            assert one(results, role_id, check).status is Status.OK
    assert one(results, ACCOUNTS, "account-access", "people").detail.endswith(f"assumed manager role {MANAGER_B}")
    assert {r.status for r in rows(results, PRINCIPALS, "principal-exists")} == {Status.OK}
    # trust_policy: same account needs nothing more; bob in B is let in by the managed policy on his group
    assert "trust policy alone" in one(results, "ops-admin", "source-assume", "user/alice").detail
    bob = one(results, "ops-admin", "source-assume", BOB)
    assert bob.status is Status.OK and "managed policy assume-ops attached to group operators" in bob.detail
    # group_membership: the group in both accounts allows sts:AssumeRole, the role trusts both accounts
    assert {r.status for r in rows(results, "ro-group", "source-assume")} == {Status.OK}
    assert len(rows(results, "ro-group", "group-exists")) == 2
    assert one(results, "ro-group", "trust-source").status is Status.OK
    # writes: moto has no simulate_principal_policy -> proved by rewriting for trust_policy, WARN otherwise
    assert "proved by rewriting" in one(results, "ops-admin", "manager-write").detail
    for role_id in ("ro-group", "billing-inline"):
        write = one(results, role_id, "manager-write")
        assert write.status is Status.WARN and "not verifiable here" in write.detail
    assert world.a.get_role(RoleName="OpsAdmin")["Role"]["AssumeRolePolicyDocument"] == before


def test_render_table_and_json(world: World) -> None:
    results = world.run()
    table = render_table(results)
    assert table.splitlines()[0].split()[:4] == ["ROLE", "CHECK", "STATUS", "DETAIL"]
    assert "ops-admin" in table and table.splitlines()[-1].endswith("0 FAIL")
    parsed = json.loads(render_json(results))
    assert parsed["ok"] is True and len(parsed["results"]) == len(results)
    assert {"role_id", "check", "status", "detail", "fix"} <= set(parsed["results"][0])


# ---- each failure on its own ---------------------------------------------------------------------
def test_role_missing(world: World) -> None:
    world.a.delete_role(RoleName="OpsAdmin")
    results = world.run()
    assert fails(results) == [("ops-admin", "role-exists")]
    assert exit_code(results) == 1
    # nothing else about a missing role is reported
    assert {r.check for r in results if r.role_id == "ops-admin"} == {"switch-role-name", "role-exists"}


def test_role_under_another_path(world: World) -> None:
    world.a.delete_role(RoleName="OpsAdmin")
    world.a.create_role(RoleName="OpsAdmin", Path="/elsewhere/", AssumeRolePolicyDocument=trust(A))
    results = world.run()
    assert fails(results) == [("ops-admin", "role-arn")]
    row = one(results, "ops-admin", "role-arn")
    assert "/elsewhere/" in row.detail and "set path: /elsewhere/" in row.fix


def test_same_named_role_in_another_account(world: World) -> None:
    """An account without a manager role, while Keyturn's credentials live elsewhere: the wrong role answers."""
    raw = raw_catalog()
    raw["accounts"].append({"id": "333333333333", "alias": "stray"})
    raw["roles"].append({"id": "stray", "name": "Stray", "account": "stray", "role_name": "OpsAdmin",
                         "path": "/keyturn/", "approvers": ["U0APPR01"]})
    world.use(raw)
    results = world.run()
    assert set(fails(results)) == {(ACCOUNTS, "account-access"), ("stray", "role-arn")}
    assert f"in account {A}, not 333333333333" in one(results, "stray", "role-arn").detail


def test_trust_policy_requiring_external_id(world: World) -> None:
    world.a.update_assume_role_policy(RoleName="OpsAdmin", PolicyDocument=trust(
        A, Condition={"StringEquals": {"sts:ExternalId": "s3cr3t"}}))
    results = world.run()
    assert fails(results) == [("ops-admin", "external-id")]
    assert "People" in one(results, "ops-admin", "external-id").detail


def test_principal_user_missing(world: World) -> None:
    world.use(raw_catalog(principals={**RAW["principals"], "U0CAROL01": f"arn:aws:iam::{B}:user/carol"}))
    results = world.run()
    assert (PRINCIPALS, "principal-exists") in fails(results)
    row = one(results, PRINCIPALS, "principal-exists", "carol")
    assert row.status is Status.FAIL and "does not exist" in row.detail and "U0CAROL01" in row.detail


def test_cross_account_principal_without_assume_permission(world: World) -> None:
    world.detach_bob()
    results = world.run()
    assert fails(results) == [("ops-admin", "source-assume")]
    row = one(results, "ops-admin", "source-assume", BOB)
    assert "no policy allows sts:AssumeRole" in row.detail
    snippet = json.loads(row.fix.split(": ", 1)[1])
    assert snippet["Statement"] == [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": OPS}]


@pytest.mark.parametrize("how", ["group-inline-wildcards", "user-inline", "user-managed-star"])
def test_cross_account_principal_allowed(world: World, how: str) -> None:
    world.detach_bob()
    if how == "group-inline-wildcards":
        world.b.put_group_policy(GroupName="operators", PolicyName="ops",
                                 PolicyDocument=allow("sts:*", f"arn:aws:iam::{A}:role/keyturn/*"))
    elif how == "user-inline":
        world.b.put_user_policy(UserName="bob", PolicyName="ops", PolicyDocument=allow("STS:AssumeRole", OPS))
    else:
        arn = world.b.create_policy(PolicyName="everything", PolicyDocument=allow("*", "*"))["Policy"]["Arn"]
        world.b.attach_user_policy(UserName="bob", PolicyArn=arn)
    results = world.run()
    assert fails(results) == [], render_table(results)
    assert one(results, "ops-admin", "source-assume", BOB).status is Status.OK


def test_explicit_deny_on_the_source_side(world: World) -> None:
    world.b.put_user_policy(UserName="bob", PolicyName="no-ops", PolicyDocument=allow("sts:AssumeRole", "*", "Deny"))
    results = world.run()
    row = one(results, "ops-admin", "source-assume", BOB)
    assert row.status is Status.FAIL and "explicitly denied by inline policy no-ops of user bob" in row.detail


def test_conditional_deny_is_a_warning(world: World) -> None:
    world.b.put_user_policy(UserName="bob", PolicyName="mfa", PolicyDocument=allow(
        "*", "*", "Deny", Condition={"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}))
    results = world.run()
    assert one(results, "ops-admin", "source-assume", BOB).status is Status.WARN
    assert exit_code(results) == 0


def test_role_principal_and_its_permissions_boundary(world: World) -> None:
    """A federated person (iam_role) signing in with a role in B (moto keeps boundaries on roles only): the
    sign-in role is allowed by its policy, capped by its boundary."""
    ci = f"arn:aws:iam::{B}:role/ci-runner"
    world.use(raw_catalog(identities=[{"slack": "U0CI00001", "kind": "iam_role", "role_arn": ci,
                                       "session_name": "ci-bot"}]))
    world.b.create_role(RoleName="ci-runner", AssumeRolePolicyDocument=trust(B))
    world.b.put_role_policy(RoleName="ci-runner", PolicyName="ops", PolicyDocument=allow("sts:AssumeRole", OPS))
    results = world.run()
    row = one(results, "ops-admin", "source-assume", ci)
    assert row.status is Status.OK and "inline policy ops of role ci-runner" in row.detail
    assert one(results, IDENTITIES, "sign-in-role", ci).status is Status.OK
    assert "needs IAM users" in one(results, "ro-group", "principal-kind").detail
    arn = world.b.create_policy(PolicyName="boundary", PolicyDocument=allow("s3:*", "*"))["Policy"]["Arn"]
    world.b.put_role_permissions_boundary(RoleName="ci-runner", PermissionsBoundary=arn)
    results = world.run()
    row = one(results, "ops-admin", "source-assume", ci)
    assert row.status is Status.FAIL and "permissions boundary" in row.detail


def test_session_longer_than_the_grant_warns(world: World) -> None:
    world.a.update_role(RoleName="OpsAdmin", MaxSessionDuration=43200)
    results = world.run()
    row = one(results, "ops-admin", "session-duration")
    assert row.status is Status.WARN and "session deny" in row.detail
    assert row.fix.endswith("--max-session-duration 14400")
    assert exit_code(results) == 0


def test_group_missing_in_the_principals_account(world: World) -> None:
    world.b.delete_group_policy(GroupName="keyturn-ro", PolicyName="assume-ro")
    world.b.delete_group(GroupName="keyturn-ro")
    results = world.run()
    assert set(fails(results)) == {("ro-group", "group-exists"), ("ro-group", "source-assume")}
    assert B in one(results, "ro-group", "group-exists", B).detail


def test_group_without_assume_policy(world: World) -> None:
    world.b.delete_group_policy(GroupName="keyturn-ro", PolicyName="assume-ro")
    results = world.run()
    assert fails(results) == [("ro-group", "source-assume")]
    assert "group keyturn-ro" in one(results, "ro-group", "source-assume", B).fix


def test_role_not_trusting_the_source_account(world: World) -> None:
    world.a.update_assume_role_policy(RoleName="Billing", PolicyDocument=trust(A))
    results = world.run()
    assert fails(results) == [("billing-inline", "trust-source")]
    row = one(results, "billing-inline", "trust-source")
    assert BOB in row.detail and f"arn:aws:iam::{B}:root" in row.fix


def test_principal_in_an_unmanaged_account(world: World) -> None:
    dan = "arn:aws:iam::444444444444:user/dan"
    world.use(raw_catalog(principals={**RAW["principals"], "U0DAN0001": dan}))
    results = world.run()
    assert one(results, PRINCIPALS, "principal-exists", dan).status is Status.WARN
    row = one(results, "ops-admin", "source-assume", dan)
    assert row.status is Status.WARN and "not managed, cannot check" in row.detail


def test_switch_role_name_too_long(world: World) -> None:
    path = "/" + "p" * 40 + "/"
    world.a.create_role(RoleName="LongOne" + "x" * 20, Path=path, AssumeRolePolicyDocument=trust(A))
    role = dataclasses.replace(world.catalog.roles["ops-admin"], id="long", role_name="LongOne" + "x" * 20, path=path)
    world.catalog = dataclasses.replace(world.catalog, roles={**world.catalog.roles, "long": role})
    results = world.run()
    assert one(results, "long", "switch-role-name").status is Status.FAIL
    assert {r.check for r in results if r.status is Status.FAIL} == {"switch-role-name", "source-assume"}


def test_write_probe_can_be_turned_off(world: World) -> None:
    writes: list[str] = []
    world.a.meta.events.register("before-parameter-build.iam.UpdateAssumeRolePolicy",
                                 lambda params, **_: writes.append(params["RoleName"]))
    assert one(world.run(), "ops-admin", "manager-write").status is Status.OK
    assert writes == ["OpsAdmin"]
    row = one(world.run(write_probe=False), "ops-admin", "manager-write")
    assert row.status is Status.WARN and "write probe off" in row.detail
    assert writes == ["OpsAdmin"]


# ---- simulate_principal_policy, where IAM offers it ---------------------------------------------
class SimulatingIam:
    """The real moto client, plus the simulate_principal_policy answers AWS would give."""

    def __init__(self, real: Any, denied: set[str], calls: list[dict[str, Any]]):
        self.real, self.denied, self.calls = real, denied, calls

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def get_paginator(self, op: str) -> Any:
        return self if op == "simulate_principal_policy" else self.real.get_paginator(op)

    def paginate(self, **params: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(params)
        yield {"EvaluationResults": [
            {"EvalActionName": a, "EvalResourceName": params["ResourceArns"][0],
             "EvalDecision": "implicitDeny" if a in self.denied else "allowed"} for a in params["ActionNames"]]}


class SimulatingClients:
    def __init__(self, real: AwsClients, denied: set[str]):
        self.real, self.denied = real, denied
        self.calls: list[dict[str, Any]] = []

    def iam(self, account: str) -> Any:
        return SimulatingIam(self.real.iam(account), self.denied, self.calls)

    def sts(self) -> Any:
        return self.real.sts()

    def sso_admin(self, region: str | None = None) -> Any:
        return self.real.sso_admin(region)

    def identitystore(self, region: str | None = None) -> Any:
        return self.real.identitystore(region)


def test_simulation_decides_write_access_when_available(world: World) -> None:
    writes: list[str] = []
    world.a.meta.events.register("before-parameter-build.iam.UpdateAssumeRolePolicy", lambda **_: writes.append("w"))
    clients = SimulatingClients(world.clients, denied={"iam:AddUserToGroup"})
    results = run_doctor(world.catalog, clients)
    assert fails(results) == [("ro-group", "manager-write")]
    row = one(results, "ro-group", "manager-write")
    assert f"iam:AddUserToGroup on arn:aws:iam::{B}:group/keyturn-ro" in row.detail
    assert "iam:AddUserToGroup on arn:aws:iam::123456789012:group/keyturn-ro" in row.detail
    assert "allows all 3" in one(results, "ops-admin", "manager-write").detail
    assert one(results, "billing-inline", "manager-write").status is Status.OK
    assert writes == []  # no write probe when the simulation answers
    sources = {c["PolicySourceArn"] for c in clients.calls}
    assert sources == {f"arn:aws:iam::{A}:user/moto", MANAGER_B}


# ---- real AccessDenied from moto's own IAM authorization -----------------------------------------
def _reset_auth(url: str, count: str) -> Any:
    req = urllib.request.Request(f"{url}/moto-api/reset-auth", data=count.encode(), method="POST",
                                 headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]


def test_access_denied_names_the_missing_action(moto_reset: str) -> None:
    raw = raw_catalog(accounts=[{"id": A, "alias": "home"}], principals={"U0ALICE01": f"arn:aws:iam::{A}:user/alice"})
    w = World(raw)
    seed_iam(w.a, w.catalog)
    w.a.put_group_policy(GroupName="keyturn-ro", PolicyName="assume-ro", PolicyDocument=allow("sts:AssumeRole", RO))
    w.a.create_user(UserName="keyturn-svc")
    w.a.put_user_policy(UserName="keyturn-svc", PolicyName="doctor", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*", "sts:GetCallerIdentity"], "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:GetGroup", "Resource": "*"}]}))
    key = w.a.create_access_key(UserName="keyturn-svc")["AccessKey"]
    session = boto3.session.Session(aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                                    region_name="us-east-1")
    previous = _reset_auth(moto_reset, "0")
    try:
        results = run_doctor(w.catalog, clients_for(w.catalog, session))
    finally:
        _reset_auth(moto_reset, str(previous))
    write = one(results, "ops-admin", "manager-write")
    assert write.status is Status.FAIL and "iam:UpdateAssumeRolePolicy denied" in write.detail
    read = one(results, "ro-group", "manager-read")
    assert read.status is Status.FAIL and "iam:GetGroup (group keyturn-ro" in read.detail
    assert one(results, "ops-admin", "manager-read").status is Status.OK


# ---- the policy matcher on its own ---------------------------------------------------------------
def test_glob_and_evaluate() -> None:
    assert glob("sts:Assume*", "STS:assumerole", fold=True)
    assert not glob("arn:aws:iam::1:role/a*", "arn:aws:iam::1:role/B", fold=False)
    assert glob("arn:aws:iam::?:role/[x]", "arn:aws:iam::1:role/[x]", fold=False)  # [ ] are not special
    doc: dict[str, Any] = {"Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}
    assert evaluate([Named("p", doc)], "sts:AssumeRole", OPS).allowed_by == ("p",)
    doc = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": OPS}]}
    assert evaluate([Named("p", doc)], "sts:AssumeRole", OPS).allowed_by == ()
    doc = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                          "Resource": f"arn:aws:iam::{A}:role/${{aws:username}}"}]}
    verdict = evaluate([Named("p", doc)], "sts:AssumeRole", f"arn:aws:iam::{A}:role/bob", {"aws:username": "bob"})
    assert verdict.allowed_by == ("p",)
    doc = {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": OPS,
                          "Condition": {"StringEquals": {"sts:RoleSessionName": "${aws:username}"}}}]}
    assert evaluate([Named("p", doc)], "sts:AssumeRole", OPS).conditional_allow


def test_trusts() -> None:
    bob = parse_principal(BOB)
    assert trusts({"Statement": [{"Effect": "Allow", "Principal": {"AWS": B}, "Action": "sts:*"}]}, bob)
    assert trusts({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}]}, bob)
    assert trusts({"Statement": [{"Effect": "Allow", "Principal": {"AWS": [BOB]}, "Action": "sts:AssumeRole"}]}, bob)
    assert not trusts({"Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"},
                                      "Action": "sts:AssumeRole"}]}, bob)
    assert not trusts({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                      "Action": "sts:AssumeRole"}]}, bob)


# ---- the command line ----------------------------------------------------------------------------
def _cli(tmp_path: Path, *args: str) -> Any:
    from service.cli import main

    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(raw_catalog()))
    env = {"DATABASE_URL": f"sqlite:///{tmp_path}/keyturn.db", "KEYTURN_CATALOG": str(catalog),
           "REDIS_URL": "redis://127.0.0.1:9/0"}  # nothing listens there: the doctor must not need Redis
    return CliRunner().invoke(main, ["doctor", *args], env=env)


def test_cli_doctor_exit_codes_and_table(world: World, tmp_path: Path) -> None:
    result = _cli(tmp_path)
    assert result.exit_code == 0, result.output
    assert "ROLE" in result.output and "ops-admin" in result.output and " 0 FAIL" in result.output
    world.a.delete_role(RoleName="OpsAdmin")
    result = _cli(tmp_path)
    assert result.exit_code == 1, result.output
    line = next(x for x in result.output.splitlines() if "role-exists" in x and x.startswith("ops-admin"))
    assert " FAIL " in line
    parsed = json.loads(_cli(tmp_path, "--format", "json").output)
    assert parsed["ok"] is False and parsed["summary"]["FAIL"] == 1


# ---- people who sign in through IAM Identity Center, and the targets' trust ---------------------
STORE = "d-0123456789"  # moto makes an identity store on first use
SSO_ROLE = "AWSReservedSSO_Developer_0123456789abcdef"
SSO_ROLE_ARN = f"arn:aws:iam::{A}:role/aws-reserved/sso.amazonaws.com/{SSO_ROLE}"


@pytest.fixture
def sso(world: World) -> World:
    """sam signs in with permission set Developer in account A; dev-ic grants that permission set."""
    center = boto3.client("sso-admin")
    instance_arn = center.list_instances()["Instances"][0]["InstanceArn"]
    center.create_permission_set(Name="Developer", InstanceArn=instance_arn)
    boto3.client("identitystore").create_user(IdentityStoreId=STORE, UserName="sam", DisplayName="Sam",
                                              Name={"GivenName": "Sam", "FamilyName": "Test"})
    world.a.create_role(RoleName=SSO_ROLE, Path="/aws-reserved/sso.amazonaws.com/", AssumeRolePolicyDocument=trust(A))
    raw = raw_catalog(
        settings={"identity_center": {"instance_arn": instance_arn, "identity_store_id": STORE,
                                      "region": "us-east-1"}},
        identities=[{"slack": "U0SAM0001", "kind": "sso_user", "user_name": "sam",
                     "permission_sets": [{"account": "home", "permission_set": "Developer"}]}])
    raw["roles"].append({"id": "dev-ic", "name": "Developer", "account": "home", "strategy": "identity_center",
                         "permission_set": "Developer", "approvers": ["U0APPR01"]})
    world.use(raw)
    return world


def _add_trust(world: World, statement: dict[str, Any]) -> None:
    doc = world.a.get_role(RoleName="OpsAdmin")["Role"]["AssumeRolePolicyDocument"]
    doc["Statement"].append({"Effect": "Allow", "Action": "sts:AssumeRole", **statement})
    world.a.update_assume_role_policy(RoleName="OpsAdmin", PolicyDocument=json.dumps(doc))


def test_sso_person_healthy(sso: World) -> None:
    results = sso.run(write_probe=False)
    assert one(results, IDENTITIES, "sign-in-role", "sam").status is Status.OK
    assert SSO_ROLE_ARN in one(results, IDENTITIES, "sign-in-role", "sam").detail
    assert one(results, IDENTITIES, "identity-store-user", "sam").status is Status.OK
    assert one(results, "dev-ic", "permission-set").status is Status.OK
    assert rows(results, "dev-ic", "role-exists") == []  # no target role of Keyturn's to look for
    assert one(results, "ops-admin", "trust-broad").status is Status.OK
    assert one(results, "ops-admin", "trust-keyturn").status is Status.OK
    assert exit_code(results) == 0, render_table(results)


def test_sso_sign_in_role_missing(sso: World) -> None:
    sso.a.delete_role(RoleName=SSO_ROLE)
    row = one(sso.run(write_probe=False), IDENTITIES, "sign-in-role", "sam")
    assert row.status is Status.FAIL and "permission set Developer" in row.detail
    assert "assign permission set Developer to sam" in row.fix


def test_sso_person_missing_from_the_identity_store(sso: World) -> None:
    store = boto3.client("identitystore")
    user_id = store.get_user_id(IdentityStoreId=STORE, AlternateIdentifier={
        "UniqueAttribute": {"AttributePath": "userName", "AttributeValue": "sam"}})["UserId"]
    store.delete_user(IdentityStoreId=STORE, UserId=user_id)
    results = sso.run(write_probe=False)
    row = one(results, IDENTITIES, "identity-store-user", "sam")
    assert row.status is Status.FAIL and "no IAM Identity Center user named sam" in row.detail
    assert exit_code(results) == 1


def test_trust_naming_a_sign_in_role_without_a_person_pin_fails(sso: World) -> None:
    _add_trust(sso, {"Sid": "Pinned", "Principal": {"AWS": SSO_ROLE_ARN},
                     "Condition": {"StringEquals": {"aws:userid": "AROAEXAMPLE:sam"}}})
    assert one(sso.run(write_probe=False), "ops-admin", "trust-broad").status is Status.OK
    _add_trust(sso, {"Sid": "AllDevelopers", "Principal": {"AWS": SSO_ROLE_ARN}})
    row = one(sso.run(write_probe=False), "ops-admin", "trust-broad")
    assert row.status is Status.FAIL and "AllDevelopers" in row.detail and "Pinned" not in row.detail


def test_identity_center_role_whose_permission_set_is_missing(sso: World) -> None:
    raw = copy.deepcopy(RAW)
    raw["roles"] = [*raw["roles"], {"id": "dev-ic", "name": "Developer", "account": "home",
                                    "strategy": "identity_center", "permission_set": "Missing",
                                    "approvers": ["U0APPR01"]}]
    assert sso.catalog.identity_center is not None
    raw["settings"] = {"identity_center": dataclasses.asdict(sso.catalog.identity_center)}
    raw["settings"]["identity_center"].pop("portal_url")
    sso.use(raw)
    row = one(sso.run(write_probe=False), "dev-ic", "permission-set")
    assert row.status is Status.FAIL and "no permission set named Missing" in row.detail


def test_trust_naming_keyturns_own_role_fails(world: World) -> None:
    assert one(world.run(write_probe=False), "ops-admin", "trust-keyturn").status is Status.OK
    _add_trust(world, {"Sid": "KeyturnItself", "Principal": {"AWS": MANAGER_B}})
    results = world.run(write_probe=False)
    row = one(results, "ops-admin", "trust-keyturn")
    assert row.status is Status.FAIL and "KeyturnItself" in row.detail and MANAGER_B in row.detail
    assert "remove those statements" in row.fix
    assert exit_code(results) == 1


def test_a_role_needing_a_security_key_fails_without_the_console(world: World) -> None:
    """Security-key approvals happen on the console's confirm page: with the console off nobody can approve."""
    raw = raw_catalog()
    raw["roles"][0]["require_security_key"] = True
    raw["roles"][1].update(allow_self_approval=True, break_glass_requires_security_key=True)
    world.use(raw)
    off = world.run(write_probe=False)
    assert {(r.role_id, r.check) for r in off if r.status is Status.FAIL} == {
        ("ops-admin", "security-key-console"), ("ro-group", "security-key-console")}
    assert "nobody can approve" in one(off, "ops-admin", "security-key-console").detail
    assert "break-glass approvals" in one(off, "ro-group", "security-key-console").detail
    assert exit_code(off) == 1
    on = world.run(write_probe=False, console_url="https://keyturn.example.com")
    assert one(on, "ops-admin", "security-key-console").status is Status.OK
    assert rows(on, "billing-inline", "security-key-console") == []  # no flag, no row
    assert not [r for r in on if r.check == "security-key-console" and r.status is not Status.OK]
