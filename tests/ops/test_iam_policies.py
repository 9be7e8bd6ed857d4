"""config/iam: Keyturn's own policies are least-privilege, cover every call Keyturn makes, and IAM (moto) takes them."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

IAM_DIR = Path(__file__).resolve().parents[2] / "config" / "iam"
KEYTURN = "keyturn-policy.json"
MANAGER = "manager-role-policy.json"
TRUST = "manager-trust-policy.json"
PERMISSION_FILES = (KEYTURN, MANAGER)

SERVICE_ROLE = "arn:aws:iam::123456789012:role/keyturn/keyturn-service"
MANAGER_ROLE = "arn:aws:iam::222222222222:role/keyturn/keyturn-manager"
ROLE = "arn:aws:iam::222222222222:role/keyturn/Admin"
GROUP = "arn:aws:iam::222222222222:group/keyturn/keyturn-prod-readonly"
USER = "arn:aws:iam::111111111111:user/alice"

# What Keyturn calls, and on what (service/aws, service/doctor/).
NEEDED = [
    *[(f"iam:{a}", ROLE) for a in ("GetRole", "UpdateAssumeRolePolicy", "ListRolePolicies", "GetRolePolicy",
                                    "PutRolePolicy", "DeleteRolePolicy")],
    *[(f"iam:{a}", GROUP) for a in ("GetGroup", "AddUserToGroup", "RemoveUserFromGroup", "ListGroupPolicies",
                                     "GetGroupPolicy", "PutGroupPolicy", "DeleteGroupPolicy")],
    *[(f"iam:{a}", USER) for a in ("GetUser", "ListGroupsForUser", "ListUserPolicies", "GetUserPolicy",
                                    "PutUserPolicy", "DeleteUserPolicy", "ListAttachedUserPolicies")],
    ("iam:GetPolicy", "arn:aws:iam::111111111111:policy/people/AssumeKeyturnRoles"),
    ("iam:SimulatePrincipalPolicy", SERVICE_ROLE),
    ("iam:SimulatePrincipalPolicy", MANAGER_ROLE),
]
# Writes that would let Keyturn change itself or reach beyond /keyturn/.
FORBIDDEN = [
    *[(f"iam:{a}", own) for own in (SERVICE_ROLE, MANAGER_ROLE)
      for a in ("UpdateAssumeRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "AttachRolePolicy",
                "PutRolePermissionsBoundary", "UpdateRole", "TagRole", "DeleteRole")],
    ("iam:CreatePolicyVersion", "arn:aws:iam::123456789012:policy/keyturn-service"),
    ("iam:SetDefaultPolicyVersion", "arn:aws:iam::123456789012:policy/keyturn/keyturn-service"),
    ("iam:UpdateAssumeRolePolicy", "arn:aws:iam::222222222222:role/Admin"),
    ("iam:PutRolePolicy", "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole"),
    ("iam:AddUserToGroup", "arn:aws:iam::111111111111:group/Administrators"),
    ("iam:PutGroupPolicy", "arn:aws:iam::111111111111:group/Administrators"),
    ("iam:AttachUserPolicy", USER),
    ("iam:CreateAccessKey", USER),
    ("iam:CreateRole", ROLE),
    ("iam:PassRole", ROLE),
    ("sts:AssumeRole", ROLE),
]
READ_VERBS = ("Get", "List", "Simulate", "Generate")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((IAM_DIR / name).read_text())
    return data


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def matches(pattern: str, value: str, *, fold: bool) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if fold else 0) is not None


def decide(policy: dict[str, Any], action: str, resource: str) -> str:
    """IAM's order for one identity policy without conditions: an explicit Deny wins, then Allow, else implicit."""
    hits = {s["Effect"] for s in policy["Statement"]
            if any(matches(a, action, fold=True) for a in as_list(s["Action"]))
            and any(matches(r, resource, fold=False) for r in as_list(s["Resource"]))}
    return "Deny" if "Deny" in hits else "Allow" if "Allow" in hits else "implicit deny"


def size(document: dict[str, Any]) -> int:
    """Characters as IAM counts them against its quotas: white space not counted."""
    return len(re.sub(r"\s", "", json.dumps(document)))


# ---- static checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [KEYTURN, MANAGER, TRUST])
def test_documents_are_well_formed(name: str) -> None:
    doc = load(name)
    assert doc["Version"] == "2012-10-17"
    assert doc["Statement"]
    sids = [s.get("Sid") for s in doc["Statement"]]
    assert len(set(sids)) == len(sids)
    for stmt in doc["Statement"]:
        assert stmt["Effect"] in ("Allow", "Deny")
        assert stmt["Action"]
        if name == TRUST:
            assert "Principal" in stmt and "Resource" not in stmt
        else:
            assert stmt["Resource"] and "Principal" not in stmt


@pytest.mark.parametrize("name", PERMISSION_FILES)
def test_no_wildcard_allows(name: str) -> None:
    for stmt in load(name)["Statement"]:
        if stmt["Effect"] != "Allow":
            continue
        actions, resources = as_list(stmt["Action"]), as_list(stmt["Resource"])
        assert not {"*", "iam:*", "sts:*"} & set(actions), stmt
        assert all("*" not in a for a in actions), f"wildcard action in an Allow: {stmt}"
        writes = [a for a in actions if not a.split(":")[1].startswith(READ_VERBS)]
        if writes:
            assert "*" not in resources, f"IAM writes on Resource '*': {stmt}"
            for r in resources:
                assert re.match(r"arn:aws:iam::\*:(role/keyturn/|group/keyturn/|user/)", r), f"{writes} on {r}"


@pytest.mark.parametrize("name", PERMISSION_FILES)
def test_explicit_deny_on_keyturn_itself(name: str) -> None:
    denies = [s for s in load(name)["Statement"] if s["Effect"] == "Deny"]
    assert [s["Sid"] for s in denies] == ["DenyChangingKeyturnItself"]
    assert "arn:aws:iam::*:role/keyturn/keyturn-service*" in denies[0]["Resource"]


@pytest.mark.parametrize("name", PERMISSION_FILES)
@pytest.mark.parametrize(("action", "resource"), NEEDED)
def test_every_call_keyturn_makes_is_allowed(name: str, action: str, resource: str) -> None:
    assert decide(load(name), action, resource) == "Allow"


@pytest.mark.parametrize("name", PERMISSION_FILES)
@pytest.mark.parametrize(("action", "resource"), FORBIDDEN)
def test_nothing_else_is(name: str, action: str, resource: str) -> None:
    assert decide(load(name), action, resource) != "Allow"


def test_only_keyturn_assumes_manager_roles() -> None:
    assert decide(load(KEYTURN), "sts:AssumeRole", MANAGER_ROLE) == "Allow"
    assert decide(load(MANAGER), "sts:AssumeRole", MANAGER_ROLE) == "implicit deny"


def test_decide_sees_a_deny_win() -> None:
    """The little evaluator above is able to fail: the Deny beats the Allow on Keyturn's own role."""
    policy = load(KEYTURN)
    assert decide(policy, "iam:GetRole", SERVICE_ROLE) == "Allow"  # reads of itself are fine
    assert decide(policy, "iam:PutRolePolicy", SERVICE_ROLE) == "Deny"
    allow_only = {"Statement": [s for s in policy["Statement"] if s["Effect"] == "Allow"]}
    assert decide(allow_only, "iam:PutRolePolicy", SERVICE_ROLE) == "Allow"


def test_within_aws_size_quotas() -> None:
    for name in PERMISSION_FILES:
        assert size(load(name)) <= 6144, f"{name}: over the managed policy quota (inline on a role: 10,240)"
    assert size(load(TRUST)) <= 2048


def test_trust_policy_names_keyturn_and_the_session_keyturn_uses() -> None:
    (stmt,) = load(TRUST)["Statement"]
    assert stmt["Effect"] == "Allow" and stmt["Action"] == "sts:AssumeRole"
    assert stmt["Principal"] == {"AWS": SERVICE_ROLE}

    from service.aws.clients import AwsClients

    calls: list[dict[str, Any]] = []

    class FakeClient:
        def assume_role(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(kwargs)
            return {"Credentials": {"AccessKeyId": "a", "SecretAccessKey": "s", "SessionToken": "t",
                                    "Expiration": datetime.now(UTC) + timedelta(hours=1)}}

    class FakeSession:
        def client(self, name: str, **kwargs: Any) -> FakeClient:
            return FakeClient()

    AwsClients(session=FakeSession(), manager_roles={"222222222222": MANAGER_ROLE}).iam("222222222222")
    (call,) = calls
    assert call["RoleArn"] == MANAGER_ROLE
    # The condition must be one Keyturn satisfies; an ExternalId condition would lock it out (README).
    assert stmt["Condition"] == {"StringEquals": {"sts:RoleSessionName": call["RoleSessionName"]}}
    assert "ExternalId" not in call, "Keyturn now sends an ExternalId: require it in manager-trust-policy.json"


# ---- IAM itself (moto server) ---------------------------------------------------------------------
@pytest.fixture
def iam(moto_reset: str) -> Any:
    return boto3.client("iam", endpoint_url=moto_reset, region_name="us-east-1")


def test_iam_accepts_the_documents(iam: Any) -> None:
    ecs_trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    iam.create_role(RoleName="keyturn-service", Path="/keyturn/", AssumeRolePolicyDocument=json.dumps(ecs_trust))
    iam.put_role_policy(RoleName="keyturn-service", PolicyName="keyturn-service",
                        PolicyDocument=(IAM_DIR / KEYTURN).read_text())
    arn = iam.create_policy(PolicyName="keyturn-service", Path="/keyturn/",
                            PolicyDocument=(IAM_DIR / KEYTURN).read_text())["Policy"]["Arn"]

    role = iam.create_role(RoleName="keyturn-manager", Path="/keyturn/",
                           AssumeRolePolicyDocument=(IAM_DIR / TRUST).read_text())["Role"]
    assert role["Arn"].endswith(":role/keyturn/keyturn-manager")
    iam.put_role_policy(RoleName="keyturn-manager", PolicyName="keyturn-manager",
                        PolicyDocument=(IAM_DIR / MANAGER).read_text())

    stored = iam.get_role_policy(RoleName="keyturn-service", PolicyName="keyturn-service")["PolicyDocument"]
    assert stored["Statement"] == load(KEYTURN)["Statement"]
    version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]["Document"]
    assert version["Statement"] == load(KEYTURN)["Statement"]
    stored = iam.get_role_policy(RoleName="keyturn-manager", PolicyName="keyturn-manager")["PolicyDocument"]
    assert stored["Statement"] == load(MANAGER)["Statement"]
    trust = iam.get_role(RoleName="keyturn-manager")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == load(TRUST)["Statement"]


def test_iam_rejects_a_broken_copy(iam: Any) -> None:
    """The acceptance above means something: moto refuses a malformed resource in the same document."""
    broken = load(KEYTURN)
    broken["Statement"][0]["Resource"] = "arn:aws:iam:role/keyturn/*"
    with pytest.raises(ClientError) as info:
        iam.create_policy(PolicyName="broken", PolicyDocument=json.dumps(broken))
    assert info.value.response["Error"]["Code"] == "MalformedPolicyDocument"
