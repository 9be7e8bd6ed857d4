"""`keyturn aws template`: the templates pass cfn-lint, deploy into moto server's CloudFormation, and then
`keyturn doctor` passes and a grant works end to end on what they made.

moto's CloudFormation does not implement AWS::IAM::Group (it skips the resource with a warning), so the
tests apply exactly the groups the template declares through the IAM API (`apply_groups`); every other
resource is made by create_stack. moto gives credentials from sts:AssumeRole the assumed role's account, so
the two-account test deploys the manager template into a real second IAM, as a StackSet instance would.
"""

from __future__ import annotations

import ast
import copy
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner

from service.aws.clients import AwsClients
from service.aws_template.build import TemplateSet, build_templates
from service.aws_template.policies import IAM_DIR, TemplateError
from service.aws_template.render import write_templates
from service.catalog import Catalog, parse_catalog
from service.cli import main
from service.core.policy import is_owned
from service.doctor.run import Status, exit_code, render_table, run_doctor
from tests.integration.helpers_sync import foreign, make_world, owned, raw_catalog

A = "123456789012"  # moto's default account: Keyturn's own
B = "222222222222"  # a managed account, reached through keyturn-manager
USERS = ("alice", "bob", "carol", "dave", "erin")


def cfn_lint() -> str:
    found = shutil.which("cfn-lint", path=str(Path(sys.executable).parent)) or shutil.which("cfn-lint")
    assert found, "cfn-lint is a dev dependency (pyproject.toml)"
    return found


def two_accounts() -> dict[str, Any]:
    """Keyturn in A with the people; target roles in B, through its manager role; every strategy but SSO."""
    raw = raw_catalog()
    raw["accounts"] = [{"id": A, "alias": "home"},
                       {"id": B, "alias": "prod", "manager_role_arn": f"arn:aws:iam::{B}:role/keyturn/keyturn-manager"}]
    for role in raw["roles"]:
        role["account"] = "prod"
    raw["roles"].append({"id": "billing-group", "name": "Billing via a group", "account": "prod",
                         "role_name": "BillingGroup", "path": "/keyturn/billing/", "strategy": "inline_policy",
                         "group": "keyturn-billing", "approvers": ["U0APPR01"], "max_duration": "20h"})
    return raw


def statement(template: dict[str, Any], logical: str, sid: str) -> dict[str, Any]:
    doc = template["Resources"][logical]["Properties"]["AssumeRolePolicyDocument"]
    return next(s for s in doc["Statement"] if s.get("Sid") == sid)


# ---- what the templates say ----------------------------------------------------------------------
def test_policies_are_config_iam_files_and_follow_the_role_name() -> None:
    ts = build_templates(parse_catalog(two_accounts()), keyturn_role="keyturn-svc")
    own = json.loads((IAM_DIR / "keyturn-policy.json").read_text())
    kt = ts.templates["keyturn-service"]["Resources"]["KeyturnRole"]["Properties"]
    assert [p["PolicyName"] for p in kt["Policies"]] == ["keyturn-svc", "keyturn-inline-users"]
    got = kt["Policies"][0]["PolicyDocument"]
    assert json.dumps(got).replace("keyturn-svc", "keyturn-service") == json.dumps(own)
    deny = next(s for s in got["Statement"] if s["Sid"] == "DenyChangingKeyturnItself")
    assert "arn:aws:iam::*:role/keyturn/keyturn-svc*" in deny["Resource"]
    manager = ts.templates["keyturn-manager"]
    trust = manager["Resources"]["ManagerRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"]["AWS"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${KeyturnAccountId}:role/keyturn/keyturn-svc"}
    assert trust["Condition"] == {"StringEquals": {"sts:RoleSessionName": "keyturn-manager"}}
    assert manager["Parameters"]["KeyturnAccountId"]["Default"] == A
    assert ts.inline_users_accounts == []  # the users live in A, Keyturn's own role carries the policy there
    mgr_policy = manager["Resources"]["ManagerRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert mgr_policy["Statement"][-1] == {"Sid": "DenyAssumingAnyRole", "Effect": "Deny",
                                           "Action": "sts:AssumeRole", "Resource": "*"}


def test_target_roles_groups_and_session_durations() -> None:
    ts = build_templates(parse_catalog(two_accounts()))
    assert sorted(ts.templates) == ["account-123456789012", "account-222222222222", "keyturn-manager",
                                    "keyturn-service"]
    prod = ts.templates[f"account-{B}"]
    roles = {k: v["Properties"] for k, v in prod["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert {p["RoleName"]: p["Path"] for p in roles.values()} == {
        "OpsAdmin": "/keyturn/", "OpsMfa": "/keyturn/", "ReadOnly": "/keyturn/", "Billing": "/keyturn/",
        "BillingGroup": "/keyturn/billing/"}
    assert prod["Parameters"]["RoleOpsAdminMaxSessionDuration"]["Default"] == "14400"  # max_duration 4h
    assert prod["Parameters"]["RoleBillingGroupMaxSessionDuration"]["Default"] == "43200"  # 20h: IAM's 12h
    assert [s["Sid"] for s in roles["RoleOpsAdmin"]["AssumeRolePolicyDocument"]["Statement"]] == ["Operators"]
    assert statement(prod, "RoleRoGroup", "PeopleAccounts")["Principal"]["AWS"] == [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::{A}:root"}]
    assert not any(is_owned(s) for r in roles.values() for s in r["AssumeRolePolicyDocument"]["Statement"])
    home = ts.templates[f"account-{A}"]["Resources"]  # the people's account: only groups
    assume = {"Sid": "AssumeWhileAMember", "Effect": "Allow", "Action": "sts:AssumeRole"}
    assert {v["Properties"]["GroupName"]: v["Properties"].get("Policies") for v in home.values()} == {
        "keyturn-billing": None,
        "keyturn-people": [{"PolicyName": "keyturn-assume-roles", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [{**assume, "Resource": [
                f"arn:aws:iam::{B}:role/keyturn/OpsAdmin", f"arn:aws:iam::{B}:role/keyturn/OpsMfa"]}]}}],
        "keyturn-ro": [{"PolicyName": "keyturn-assume-roles", "PolicyDocument": {"Version": "2012-10-17", "Statement": [
            {**assume, "Resource": [f"arn:aws:iam::{B}:role/keyturn/ReadOnly"]}]}}]}
    assert all(v["Properties"]["Path"] == "/keyturn/" for v in home.values())


def test_identity_center_adds_its_policy_and_no_role() -> None:
    raw = raw_catalog()
    raw["settings"]["identity_center"] = {"instance_arn": "arn:aws:sso:::instance/ssoins-1234567890abcdef",
                                          "identity_store_id": "d-1234567890"}
    raw["roles"] = [{"id": "sso-admin", "name": "SSO admin", "account": "moto", "strategy": "identity_center",
                     "permission_set": "Admin", "approvers": ["U0APPR01"]}]
    ts = build_templates(parse_catalog(raw))
    names = [p["PolicyName"] for p in
             ts.templates["keyturn-service"]["Resources"]["KeyturnRole"]["Properties"]["Policies"]]
    assert names == ["keyturn-service", "keyturn-identity-center"]
    assert sorted(ts.templates) == ["keyturn-service"]  # no target role: Identity Center makes it
    assert any("keyturn-assignable" in n for n in ts.notes)


def test_what_keyturn_could_not_manage_is_refused_with_every_reason() -> None:
    raw = two_accounts()
    raw["accounts"][1]["manager_role_arn"] = f"arn:aws:iam::{B}:role/keyturn-manager"
    raw["roles"][0]["path"] = "/"
    raw["roles"][1]["role_name"] = "keyturn-service-copy"
    with pytest.raises(TemplateError) as err:
        build_templates(parse_catalog(raw))
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 3, text
    assert "manager_role_arn arn:aws:iam::222222222222:role/keyturn-manager" in text
    assert "path / is outside /keyturn/" in text and "keyturn-service-copy" in text
    no_manager = two_accounts()
    del no_manager["accounts"][1]["manager_role_arn"]
    with pytest.raises(TemplateError, match="give --keyturn-account"):
        build_templates(parse_catalog(no_manager))


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_cli_writes_templates_that_pass_cfn_lint(tmp_path: Path, fmt: str) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(two_accounts()))
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["aws", "template", "--catalog", str(catalog), "--out", str(out),
                                       "--format", fmt])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob(f"*.{fmt}"))
    assert [f.name for f in files] == [f"account-{A}.{fmt}", f"account-{B}.{fmt}", f"keyturn-manager.{fmt}",
                                       f"keyturn-service.{fmt}"]
    lint = subprocess.run([cfn_lint(), *map(str, files)], capture_output=True, text=True, timeout=300)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert lint.stdout == ""
    plan = (out / "DEPLOY.md").read_text()
    assert plan.index("keyturn-service") < plan.index("create-stack-set") < plan.index(f"account-{B}")
    assert f"KeyturnAccountId,ParameterValue={A}" in plan


def test_cfn_lint_catches_a_broken_template(tmp_path: Path) -> None:
    """The lint is a real check: a template with a property IAM roles do not have fails it."""
    ts = build_templates(parse_catalog(raw_catalog()))
    broken = copy.deepcopy(ts)
    broken.templates["keyturn-service"]["Resources"]["KeyturnRole"]["Properties"]["MaxSession"] = 3600
    [path, *_] = write_templates(broken, tmp_path)
    lint = subprocess.run([cfn_lint(), str(path)], capture_output=True, text=True, timeout=300)
    assert lint.returncode != 0 and "MaxSession" in lint.stdout


# ---- deployed into moto ---------------------------------------------------------------------------
def deploy(cfn: Any, iam: Any, name: str, body: str, **params: str) -> dict[str, str]:
    """create_stack, then the AWS::IAM::Group resources moto's CloudFormation skips; the stack's outputs."""
    cfn.create_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_NAMED_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    apply_groups(iam, yaml.safe_load(body))
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def apply_groups(iam: Any, template: dict[str, Any]) -> None:
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Group":
            continue
        props = resource["Properties"]
        iam.create_group(GroupName=props["GroupName"], Path=props["Path"])
        for policy in props.get("Policies", []):
            iam.put_group_policy(GroupName=props["GroupName"], PolicyName=policy["PolicyName"],
                                 PolicyDocument=json.dumps(policy["PolicyDocument"]))


def written(ts: TemplateSet, tmp_path: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in write_templates(ts, tmp_path) if p.suffix == ".yaml"}


def make_people(iam: Any) -> None:
    """The people's IAM users: theirs, not the template's."""
    for name in USERS:
        iam.create_user(UserName=name)


def doctor_passes(catalog: Catalog, clients: AwsClients) -> list[Any]:
    results = run_doctor(catalog, clients)
    assert exit_code(results) == 0, render_table(results)
    return results


def ok(results: list[Any], role_id: str, check: str) -> bool:
    found = [r for r in results if r.role_id == role_id and r.check == check]
    return bool(found) and all(r.status is Status.OK for r in found)


def test_one_account_deployed_doctor_passes_and_a_grant_goes_through(moto_reset: str, db_url: str,
                                                                      tmp_path: Path) -> None:
    raw = raw_catalog()
    catalog = parse_catalog(raw)
    bodies = written(build_templates(catalog), tmp_path)
    cfn, iam = boto3.client("cloudformation"), boto3.client("iam")
    out = deploy(cfn, iam, "keyturn-service", bodies["keyturn-service"])
    assert out["KeyturnRoleArn"] == f"arn:aws:iam::{A}:role/keyturn/keyturn-service"
    deploy(cfn, iam, "keyturn-targets", bodies[f"account-{A}"], RoleOpsAdminMaxSessionDuration="7200")
    make_people(iam)

    live = iam.get_role(RoleName="OpsAdmin")["Role"]
    assert live["Arn"] == f"arn:aws:iam::{A}:role/keyturn/OpsAdmin" and int(live["MaxSessionDuration"]) == 7200
    assert int(iam.get_role(RoleName="ReadOnly")["Role"]["MaxSessionDuration"]) == 14400
    service = iam.get_role_policy(RoleName="keyturn-service", PolicyName="keyturn-service")["PolicyDocument"]
    # moto's CloudFormation stores a Policies document as Python's repr of it, not as JSON
    assert ast.literal_eval(service) == json.loads((IAM_DIR / "keyturn-policy.json").read_text())
    assert iam.get_group(GroupName="keyturn-ro")["Group"]["Path"] == "/keyturn/"

    results = doctor_passes(catalog, AwsClients())
    for role_id in catalog.roles:
        assert ok(results, role_id, "role-exists") and ok(results, role_id, "session-duration"), role_id
    assert ok(results, "ro-group", "source-assume") and ok(results, "ro-group", "trust-source")
    assert ok(results, "billing-inline", "trust-source")

    world = make_world(db_url, raw)  # its IAM seeding finds every role and group already there
    try:
        grant = world.grant("U0ALICE01", "ops-admin", timedelta(hours=1))
        world.sync("ops-admin")
        assert world.state(grant) == "active"
        trust = world.trust("ops-admin")
        assert [s["Sid"] for s in foreign(trust)] == ["Operators"]  # the template's statement, untouched
        [mine] = owned(trust)
        assert mine["Principal"] == {"AWS": world.arn("U0ALICE01")}
        group_grant = world.grant("U0BOB0001", "ro-group")
        world.sync("ro-group", user="U0BOB0001")
        assert world.state(group_grant) == "active" and world.group_members("keyturn-ro") == {"bob"}
        world.revoke(grant)
        world.sync("ops-admin")
        assert owned(world.trust("ops-admin")) == [] and [s["Sid"] for s in foreign(world.trust("ops-admin"))] == [
            "Operators"]
    finally:
        world.close()


def test_two_accounts_manager_role_from_the_stackset_template(moto_reset: str, tmp_path: Path) -> None:
    catalog = parse_catalog(two_accounts())
    bodies = written(build_templates(catalog), tmp_path)
    cfn_a, iam_a = boto3.client("cloudformation"), boto3.client("iam")
    deploy(cfn_a, iam_a, "keyturn-service", bodies["keyturn-service"])
    deploy(cfn_a, iam_a, "keyturn-targets", bodies[f"account-{A}"])  # the people's groups
    make_people(iam_a)
    # Credentials in B, as a StackSet's execution role has them (moto: the assumed role's account).
    creds = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{B}:role/stackset-execution",
                                            RoleSessionName="deploy")["Credentials"]
    session_b = boto3.Session(aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                              aws_session_token=creds["SessionToken"])
    cfn_b, iam_b = session_b.client("cloudformation"), session_b.client("iam")
    out = deploy(cfn_b, iam_b, "keyturn-manager", bodies["keyturn-manager"])  # KeyturnAccountId: its default
    assert out["ManagerRoleArn"] == f"arn:aws:iam::{B}:role/keyturn/keyturn-manager"
    deploy(cfn_b, iam_b, "keyturn-targets", bodies[f"account-{B}"])
    manager = iam_b.get_role(RoleName="keyturn-manager")["Role"]
    [trust] = manager["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{A}:role/keyturn/keyturn-service"}
    assert iam_b.list_role_policies(RoleName="keyturn-manager")["PolicyNames"] == ["keyturn-manager"]
    assert iam_b.get_role(RoleName="BillingGroup")["Role"]["Path"] == "/keyturn/billing/"
    with pytest.raises(iam_a.exceptions.NoSuchEntityException):
        iam_a.get_role(RoleName="OpsAdmin")  # the target roles went to B only

    managers = {a.id: a.manager_role_arn for a in catalog.accounts.values() if a.manager_role_arn}
    failing = run_doctor(catalog, AwsClients(manager_roles=managers))
    assert {(r.role_id, r.check) for r in failing if r.status is Status.FAIL} == {
        ("ops-admin", "source-assume"), ("ops-mfa", "source-assume")}  # people not yet in keyturn-people
    for name in USERS:  # DEPLOY.md's step: the people join keyturn-people
        iam_a.add_user_to_group(GroupName="keyturn-people", UserName=name)
    results = doctor_passes(catalog, AwsClients(manager_roles=managers))
    access = [r for r in results if r.check == "account-access"]
    assert [r.status for r in access] == [Status.OK, Status.OK]
    assert "assumed manager role arn:aws:iam::222222222222:role/keyturn/keyturn-manager" in access[1].detail
    assert ok(results, "ro-group", "source-assume") and ok(results, "billing-group", "group-exists")
    assert ok(results, "ops-admin", "source-assume") and ok(results, "ops-admin", "role-exists")
