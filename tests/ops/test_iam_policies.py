"""config/iam: Keyturn's own policies are least-privilege, cover every call Keyturn makes, cannot be turned
into more access (tests/support/iam_eval decides, conditions included), and IAM (moto) takes them."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.support.iam_eval import Decision, Outcome, Request, evaluate, may_assume, session_calls

IAM_DIR = Path(__file__).resolve().parents[2] / "config" / "iam"
KEYTURN = "keyturn-policy.json"
MANAGER = "manager-role-policy.json"
TRUST = "manager-trust-policy.json"
INLINE_USERS = "inline-users-policy.json"  # optional: only where a role uses inline_policy on users
IDENTITY_CENTER = "identity-center-policy.json"  # optional: only where Keyturn assigns Identity Center access
BASE_FILES = (KEYTURN, MANAGER)
OPTIONAL_FILES = (INLINE_USERS, IDENTITY_CENTER)
PERMISSION_FILES = (*BASE_FILES, *OPTIONAL_FILES)

SERVICE_ROLE = "arn:aws:iam::123456789012:role/keyturn/keyturn-service"
MANAGER_ROLE = "arn:aws:iam::222222222222:role/keyturn/keyturn-manager"
ROLE = "arn:aws:iam::222222222222:role/keyturn/Admin"
GROUP = "arn:aws:iam::222222222222:group/keyturn/keyturn-prod-readonly"
USER = "arn:aws:iam::111111111111:user/alice"
ADMIN_USER = "arn:aws:iam::111111111111:user/admin"
SSO_ROLE = "arn:aws:iam::222222222222:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Dev_0123456789abcdef"
INSTANCE = "arn:aws:sso:::instance/ssoins-1234567890abcdef"
PERMISSION_SET = "arn:aws:sso:::permissionSet/ssoins-1234567890abcdef/ps-1234567890abcdef"
ACCOUNT = "arn:aws:sso:::account/222222222222"
STORE = "arn:aws:identitystore::123456789012:identitystore/d-1234567890"
SSO_USER = "arn:aws:identitystore:::user/a1b2c3d4-0000-0000-0000-000000000001"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
TAGGED_USER = {"aws:ResourceTag/keyturn-inline-policy": "allowed"}
ASSIGNABLE = {"aws:ResourceTag/keyturn-assignable": "true"}
VIA_SSO = {"aws:ViaAWSService": "true"}

# What Keyturn calls, and on what (service/aws, service/doctor/, the Identity Center strategy), with the
# context the call carries. Every (action, resource) of a multi-resource action is listed.
SESSION_PAGE = "arn:aws:iam::222222222222:policy/session-cuts/keyturn-sessions-Admin-1"
NEEDED: list[tuple[str, str, dict[str, str]]] = [
    *[(f"iam:{a}", ROLE, {}) for a in ("GetRole", "UpdateAssumeRolePolicy", "ListRolePolicies", "GetRolePolicy",
                                       "PutRolePolicy", "DeleteRolePolicy", "ListAttachedRolePolicies")],
    # session cuts on managed pages (service/aws/session_pages.py): only policies under /session-cuts/
    *[(f"iam:{a}", SESSION_PAGE, {}) for a in ("CreatePolicy", "CreatePolicyVersion", "DeletePolicyVersion",
                                               "ListPolicyVersions", "GetPolicy", "GetPolicyVersion", "DeletePolicy")],
    *[(f"iam:{a}", ROLE, {"iam:PolicyARN": SESSION_PAGE}) for a in ("AttachRolePolicy", "DetachRolePolicy")],
    *[(f"iam:{a}", GROUP, {}) for a in ("GetGroup", "AddUserToGroup", "RemoveUserFromGroup", "ListGroupPolicies",
                                        "GetGroupPolicy", "PutGroupPolicy", "DeleteGroupPolicy")],
    *[(f"iam:{a}", USER, {}) for a in ("GetUser", "ListGroupsForUser", "ListUserPolicies", "GetUserPolicy",
                                       "ListAttachedUserPolicies")],
    ("iam:GetRole", SSO_ROLE, {}),  # a permission-set role's unique id, for the aws:userid pin
    ("iam:ListRoles", "*", {}),  # finding AWSReservedSSO_* roles under /aws-reserved/sso.amazonaws.com/
    ("iam:GetPolicy", "arn:aws:iam::111111111111:policy/people/AssumeKeyturnRoles", {}),
    ("iam:SimulatePrincipalPolicy", SERVICE_ROLE, {}),
    ("iam:SimulatePrincipalPolicy", MANAGER_ROLE, {}),
]
NEEDED_INLINE_USERS = [(f"iam:{a}", USER, TAGGED_USER) for a in ("PutUserPolicy", "DeleteUserPolicy")]
NEEDED_IDENTITY_CENTER = [
    *[(f"sso:{a}", r, ASSIGNABLE if r == PERMISSION_SET else {})
      for a in ("CreateAccountAssignment", "DeleteAccountAssignment", "ListAccountAssignments")
      for r in (INSTANCE, PERMISSION_SET, ACCOUNT)],
    ("sso:DeleteAccountAssignment", PERMISSION_SET, {}),  # removing access never depends on a tag
    *[(f"sso:{a}", INSTANCE, {}) for a in ("DescribeAccountAssignmentCreationStatus",
                                           "DescribeAccountAssignmentDeletionStatus", "ListPermissionSets")],
    ("sso:DescribePermissionSet", INSTANCE, {}),
    ("sso:DescribePermissionSet", PERMISSION_SET, {}),
    ("identitystore:GetUserId", STORE, {}),
    ("identitystore:DescribeUser", STORE, {}),
    ("identitystore:DescribeUser", SSO_USER, {}),
    ("identitystore:ListUsers", STORE, {}),  # settings.email_lookup: the users with a Slack email
    ("identitystore:ListUsers", SSO_USER, {}),
    # assignments into the management account: IAM checks these against Keyturn, on the calls SSO makes for it
    *[(f"iam:{a}", "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Dev_0123", VIA_SSO)
      for a in ("CreateRole", "PutRolePolicy", "AttachRolePolicy", "ListRolePolicies", "DeleteRole",
                "DetachRolePolicy", "DeleteRolePolicy")],
    *[(f"iam:{a}", "arn:aws:iam::123456789012:saml-provider/AWSSSO_cd5bfb301b6c971e_DO_NOT_DELETE", VIA_SSO)
      for a in ("GetSAMLProvider", "CreateSAMLProvider", "UpdateSAMLProvider")],
]
# Writes that would let Keyturn change itself, reach beyond what it manages, or mint access for itself.
# Checked with every optional file attached too, on a call Keyturn makes itself (no tag, not via a service).
FORBIDDEN = [
    *[(f"iam:{a}", own) for own in (SERVICE_ROLE, MANAGER_ROLE)
      for a in ("UpdateAssumeRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "AttachRolePolicy",
                "PutRolePermissionsBoundary", "UpdateRole", "TagRole", "DeleteRole")],
    ("iam:CreatePolicyVersion", "arn:aws:iam::123456789012:policy/keyturn-service"),
    ("iam:SetDefaultPolicyVersion", "arn:aws:iam::123456789012:policy/keyturn/keyturn-service"),
    ("iam:UpdateAssumeRolePolicy", "arn:aws:iam::222222222222:role/Admin"),
    ("iam:PutRolePolicy", "arn:aws:iam::222222222222:role/OrganizationAccountAccessRole"),
    ("iam:AttachRolePolicy", ROLE),
    ("iam:AddUserToGroup", "arn:aws:iam::111111111111:group/Administrators"),
    ("iam:PutGroupPolicy", "arn:aws:iam::111111111111:group/Administrators"),
    ("iam:PutUserPolicy", ADMIN_USER),  # an untagged user: no admin policy written onto anyone
    ("iam:PutUserPolicy", USER),  # ... alice too, until she carries the tag
    ("iam:DeleteUserPolicy", ADMIN_USER),  # nor a guardrail Deny removed from one
    ("iam:TagUser", USER),  # and Keyturn cannot put the tag on anyone itself
    ("iam:UntagUser", USER),
    ("iam:AttachUserPolicy", USER),
    ("iam:CreateAccessKey", USER),
    ("iam:CreateLoginProfile", USER),
    ("iam:CreateUser", USER),
    ("iam:CreateRole", ROLE),
    ("iam:PassRole", ROLE),
    ("iam:CreateRole", "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/Mine"),  # not directly
    ("iam:PutRolePolicy", SSO_ROLE),
    ("iam:UpdateAssumeRolePolicy", SSO_ROLE),
    ("iam:CreateSAMLProvider", "arn:aws:iam::123456789012:saml-provider/AWSSSO_mine"),
    ("sts:AssumeRole", ROLE),
    ("sts:AssumeRole", SSO_ROLE),
    ("sso:CreateAccountAssignment", PERMISSION_SET),  # an untagged permission set
    *[(f"sso:{a}", PERMISSION_SET) for a in ("CreatePermissionSet", "PutInlinePolicyToPermissionSet",
                                             "AttachManagedPolicyToPermissionSet", "ProvisionPermissionSet",
                                             "TagResource", "UpdatePermissionSet")],
    *[(f"identitystore:{a}", STORE) for a in ("CreateUser", "UpdateUser", "CreateGroupMembership")],
]


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((IAM_DIR / name).read_text())
    return data


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def service_call(action: str, resource: str, context: dict[str, str] | None = None) -> Request:
    """A call made by Keyturn itself: a session of keyturn-service (on ECS, the task id as session name)."""
    request = session_calls(SERVICE_ROLE, "AROAKEYTURNSERVICE01", "task-1", issued_at=NOW, at=NOW,
                            action=action, resource=resource)
    return replace(request, context={**request.context, "aws:ViaAWSService": "false", **(context or {})})


def decide(files: tuple[str, ...], action: str, resource: str, context: dict[str, str] | None = None) -> Decision:
    return evaluate([load(f) for f in files], service_call(action, resource, context))


def size(document: dict[str, Any]) -> int:
    """Characters as IAM counts them against its quotas: white space not counted."""
    return len(re.sub(r"\s", "", json.dumps(document)))


# ---- static checks --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [*PERMISSION_FILES, TRUST])
def test_documents_are_well_formed(name: str) -> None:
    doc = load(name)
    assert doc["Version"] == "2012-10-17"
    assert doc["Statement"]
    sids = [s.get("Sid") for s in doc["Statement"]]
    assert len(set(sids)) == len(sids) and all(sids)
    for stmt in doc["Statement"]:
        assert stmt["Effect"] in ("Allow", "Deny")
        assert stmt["Action"]
        if name == TRUST:
            assert "Principal" in stmt and "Resource" not in stmt
        else:
            assert (stmt.get("Resource") or stmt.get("NotResource")) and "Principal" not in stmt
            assert "NotResource" not in stmt or stmt["Effect"] == "Deny", "an Allow on NotResource is too wide"


# Where an IAM write may land, and under which condition (None: none needed).
WRITE_SCOPES: list[tuple[str, dict[str, Any] | None]] = [
    (r"arn:aws:iam::\*:role/keyturn/\*", None),
    (r"arn:aws:iam::\*:group/keyturn/\*", None),
    (r"arn:aws:iam::\*:policy/session-cuts/\*", None),  # session cut pages (service/aws/session_pages.py)
    (r"arn:aws:iam::\*:user/\*", {"StringEquals": {"aws:ResourceTag/keyturn-inline-policy": "allowed"}}),
    (r"arn:aws:iam::\*:role/aws-reserved/sso\.amazonaws\.com/\*", {"Bool": {"aws:ViaAWSService": "true"}}),
    (r"arn:aws:iam::\*:saml-provider/AWSSSO_\*", {"Bool": {"aws:ViaAWSService": "true"}}),
]
READ_VERBS = ("Get", "List", "Simulate", "Generate", "Describe")


@pytest.mark.parametrize("name", PERMISSION_FILES)
def test_no_wildcard_allows(name: str) -> None:
    for stmt in load(name)["Statement"]:
        if stmt["Effect"] != "Allow":
            continue
        actions, resources = as_list(stmt["Action"]), as_list(stmt["Resource"])
        assert all("*" not in a for a in actions), f"wildcard action in an Allow: {stmt}"
        if "*" in resources:
            assert actions == ["iam:ListRoles"], f"only iam:ListRoles (no resource-level permissions) on '*': {stmt}"
        iam_writes = [a for a in actions if a.startswith("iam:") and not a.split(":")[1].startswith(READ_VERBS)]
        for r in resources if iam_writes else ():
            scope = next(((p, c) for p, c in WRITE_SCOPES if re.fullmatch(p, r)), None)
            assert scope is not None, f"{iam_writes} on {r}"
            assert scope[1] is None or stmt.get("Condition") == scope[1], f"{iam_writes} on {r} unconditioned"


@pytest.mark.parametrize(("name", "sids"), [
    (KEYTURN, ["DenyChangingKeyturnItself", "DenyAssumingAnyOtherRole"]),
    (MANAGER, ["DenyChangingKeyturnItself", "DenyAssumingAnyRole"]),
])
def test_explicit_denies(name: str, sids: list[str]) -> None:
    denies = [s for s in load(name)["Statement"] if s["Effect"] == "Deny"]
    assert [s["Sid"] for s in denies] == sids
    assert "arn:aws:iam::*:role/keyturn/keyturn-service*" in denies[0]["Resource"]


@pytest.mark.parametrize("base", BASE_FILES)
@pytest.mark.parametrize(("action", "resource", "context"), NEEDED)
def test_every_call_keyturn_makes_is_allowed(base: str, action: str, resource: str, context: dict[str, str]) -> None:
    decision = decide((base,), action, resource, context)
    assert decision.allowed, str(decision)


@pytest.mark.parametrize("base", BASE_FILES)
@pytest.mark.parametrize(("action", "resource", "context"), NEEDED_INLINE_USERS)
def test_inline_policy_on_users_needs_the_optional_file_and_the_tag(base: str, action: str, resource: str,
                                                                   context: dict[str, str]) -> None:
    assert decide((base, INLINE_USERS), action, resource, context).allowed
    assert not decide((base,), action, resource, context).allowed  # not in the base policy
    assert not decide((base, INLINE_USERS), action, resource).allowed  # an untagged user
    assert not decide((base, INLINE_USERS), action, resource, {"aws:ResourceTag/keyturn-inline-policy": "yes"})


@pytest.mark.parametrize("base", BASE_FILES)
@pytest.mark.parametrize(("action", "resource", "context"), NEEDED_IDENTITY_CENTER)
def test_identity_center_calls_need_the_optional_file(base: str, action: str, resource: str,
                                                      context: dict[str, str]) -> None:
    decision = decide((base, IDENTITY_CENTER), action, resource, context)
    assert decision.allowed, str(decision)
    if action.startswith(("sso:", "identitystore:")) or context:
        assert not decide((base,), action, resource, context).allowed


@pytest.mark.parametrize("base", BASE_FILES)
@pytest.mark.parametrize(("action", "resource"), FORBIDDEN)
def test_nothing_else_is(base: str, action: str, resource: str) -> None:
    decision = decide((base, *OPTIONAL_FILES), action, resource)
    assert not decision.allowed, f"{action} on {resource}: {decision}"


def test_only_keyturn_assumes_manager_roles() -> None:
    assert decide((KEYTURN,), "sts:AssumeRole", MANAGER_ROLE).allowed
    assert decide((MANAGER,), "sts:AssumeRole", MANAGER_ROLE).outcome is Outcome.EXPLICIT_DENY
    assert decide((KEYTURN,), "sts:AssumeRole", ROLE).sid == "DenyAssumingAnyOtherRole"


def test_the_evaluator_sees_a_deny_win() -> None:
    """The evaluator is able to fail: the Deny beats the Allow on Keyturn's own role."""
    policy = load(KEYTURN)
    assert decide((KEYTURN,), "iam:GetRole", SERVICE_ROLE).allowed  # reads of itself are fine
    denied = decide((KEYTURN,), "iam:PutRolePolicy", SERVICE_ROLE)
    assert denied.outcome is Outcome.EXPLICIT_DENY and denied.sid == "DenyChangingKeyturnItself"
    allow_only = {"Version": "2012-10-17", "Statement": [s for s in policy["Statement"] if s["Effect"] == "Allow"]}
    assert evaluate([allow_only], service_call("iam:PutRolePolicy", SERVICE_ROLE)).allowed


def test_within_aws_size_quotas() -> None:
    for name in PERMISSION_FILES:
        assert size(load(name)) <= 6144, f"{name}: over the managed policy quota"
    for base in BASE_FILES:  # all of them inline on one role: 10,240 together
        assert sum(size(load(n)) for n in (base, *OPTIONAL_FILES)) <= 10240
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


ECS_TRUST = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def test_iam_accepts_the_documents(iam: Any) -> None:
    iam.create_role(RoleName="keyturn-service", Path="/keyturn/", AssumeRolePolicyDocument=json.dumps(ECS_TRUST))
    role = iam.create_role(RoleName="keyturn-manager", Path="/keyturn/",
                           AssumeRolePolicyDocument=(IAM_DIR / TRUST).read_text())["Role"]
    assert role["Arn"].endswith(":role/keyturn/keyturn-manager")
    for role_name, files in (("keyturn-service", (KEYTURN, *OPTIONAL_FILES)), ("keyturn-manager", (MANAGER,))):
        for name in files:
            iam.put_role_policy(RoleName=role_name, PolicyName=name.removesuffix(".json"),
                                PolicyDocument=(IAM_DIR / name).read_text())
            stored = iam.get_role_policy(RoleName=role_name, PolicyName=name.removesuffix(".json"))["PolicyDocument"]
            assert stored["Statement"] == load(name)["Statement"]
    for name in PERMISSION_FILES:
        arn = iam.create_policy(PolicyName=name.removesuffix(".json"), Path="/keyturn/",
                                PolicyDocument=(IAM_DIR / name).read_text())["Policy"]["Arn"]
        version = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]["Document"]
        assert version["Statement"] == load(name)["Statement"]
    trust = iam.get_role(RoleName="keyturn-manager")["Role"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == load(TRUST)["Statement"]


def test_iam_rejects_a_broken_copy(iam: Any) -> None:
    """The acceptance above means something: moto refuses a malformed resource in the same document."""
    broken = load(KEYTURN)
    broken["Statement"][0]["Resource"] = "arn:aws:iam:role/keyturn/*"
    with pytest.raises(ClientError) as info:
        iam.create_policy(PolicyName="broken", PolicyDocument=json.dumps(broken))
    assert info.value.response["Error"]["Code"] == "MalformedPolicyDocument"


def _session(role_arn: str, session: str, target: str) -> Request:
    return session_calls(role_arn, "AROAEXAMPLEKEYTURN01", session, issued_at=NOW, at=NOW,
                         action="sts:AssumeRole", resource=target)


def test_keyturn_reaches_a_manager_role_only_under_its_session_name(iam: Any) -> None:
    """The manager trust policy as IAM holds it, with keyturn-policy as Keyturn's identity policy."""
    iam.create_role(RoleName="keyturn-manager", Path="/keyturn/",
                    AssumeRolePolicyDocument=(IAM_DIR / TRUST).read_text())
    trust = iam.get_role(RoleName="keyturn-manager")["Role"]["AssumeRolePolicyDocument"]
    keyturn = [load(KEYTURN)]

    def assume(caller: str, session: str, new_name: str, identity: list[dict[str, Any]]) -> Decision:
        request = _session(caller, session, MANAGER_ROLE)
        return may_assume(trust, identity, replace(request, context={**request.context,
                                                                     "sts:RoleSessionName": new_name}))

    assert assume(SERVICE_ROLE, "task-1", "keyturn-manager", keyturn).allowed
    assert not assume(SERVICE_ROLE, "task-1", "someone", keyturn).allowed
    assert not assume(SERVICE_ROLE, "task-1", "keyturn-manager", []).allowed  # cross-account: needs the Allow
    admin = [{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}]
    other = "arn:aws:iam::123456789012:role/Administrator"
    assert not assume(other, "mallory", "keyturn-manager", admin).allowed  # admins of Keyturn's account: no


@pytest.mark.parametrize(("own_role", "own_policy", "target", "deny_sid"), [
    # keyturn-service writes itself into a role of its own account: the trust alone would do (same account)
    (SERVICE_ROLE, KEYTURN, "arn:aws:iam::123456789012:role/keyturn/Admin", "DenyAssumingAnyOtherRole"),
    # ... or of a managed account (cross-account: its Allow covers only keyturn-manager anyway)
    (SERVICE_ROLE, KEYTURN, ROLE, "DenyAssumingAnyOtherRole"),
    # a manager role writes itself into a target role of its account
    (MANAGER_ROLE, MANAGER, ROLE, "DenyAssumingAnyRole"),
])
def test_a_trust_policy_naming_keyturn_does_not_let_keyturn_in(iam: Any, own_role: str, own_policy: str,
                                                               target: str, deny_sid: str) -> None:
    """IAM cannot refuse the write by content; the explicit Deny makes such a trust statement useless."""
    name = target.rsplit("/", 1)[-1]
    iam.create_role(RoleName=name, Path="/keyturn/", AssumeRolePolicyDocument=json.dumps(ECS_TRUST))
    written = {"Version": "2012-10-17", "Statement": [
        *ECS_TRUST["Statement"],
        {"Sid": "Keyturn" + "0" * 24, "Effect": "Allow", "Principal": {"AWS": own_role}, "Action": "sts:AssumeRole"}]}
    iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(written))  # moto, like IAM, takes it
    trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
    request = _session(own_role, "keyturn-manager", target)

    refused = may_assume(trust, [load(own_policy)], request)
    assert refused.outcome is Outcome.EXPLICIT_DENY and refused.sid == deny_sid
    without_deny = {"Version": "2012-10-17",
                    "Statement": [s for s in load(own_policy)["Statement"] if s["Sid"] != deny_sid]}
    if own_role.split(":")[4] == target.split(":")[4]:
        assert may_assume(trust, [without_deny], request).allowed  # what the Deny is there for
    else:
        assert not may_assume(trust, [without_deny], request).allowed
