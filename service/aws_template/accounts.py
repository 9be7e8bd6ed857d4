"""One account's share of the catalogue as CloudFormation: its target roles and its people's groups.

* A target role (trust_policy, group_membership, inline_policy) is created under the catalogue's path (which
  must be under /keyturn/, the only roles Keyturn's policy can touch), with MaxSessionDuration from the
  catalogue's max_duration (a parameter, IAM's 1h-12h), permissions left to the operator (a parameter of
  managed policy ARNs, empty by default) and a foreign trust statement, `Operators`, so that IAM accepts the
  trust policy before Keyturn writes its first statement (IAM refuses an empty one). Keyturn never edits a
  statement it does not own. group_membership and inline_policy roles also trust the accounts the people's
  IAM users live in (`PeopleAccounts`): Keyturn writes no trust for those strategies.
* A group (group_membership, inline_policy with `group:`) is created under /keyturn/ in every managed account
  where a catalogue IAM user lives; for group_membership it carries the allow of sts:AssumeRole on the role.
* `keyturn-people` is created in a people's account when trust_policy roles live in other accounts: across
  accounts IAM also asks the caller's own policies, so its members may call sts:AssumeRole on exactly those
  roles (who gets in is still only what Keyturn writes in the trust policy). Add the people's users to it.
* identity_center roles need nothing here: Identity Center makes the permission set's role itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from service.aws_template.policies import KEYTURN_PATH
from service.catalog.model import Catalog, Role, Strategy

IAM_MIN_SESSION, IAM_MAX_SESSION = 3600, 43200
ASSUME = "sts:AssumeRole"
PEOPLE_GROUP = "keyturn-people"  # cross-account trust_policy roles: lets its members call sts:AssumeRole on them
GROUP_POLICY = "keyturn-assume-roles"  # not Keyturn's own inline policy name (keyturn-access)
VERSION = "2012-10-17"


def logical_id(prefix: str, name: str, taken: set[str]) -> str:
    """An alphanumeric CloudFormation logical id, unique in `taken`."""
    base = prefix + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    candidate, n = base[:200], 2
    while candidate in taken:
        candidate, n = f"{base[:200]}{n}", n + 1
    taken.add(candidate)
    return candidate


def people_accounts(catalog: Catalog) -> list[str]:
    """Accounts the catalogue's IAM users live in."""
    return sorted({arn.split(":")[4] for arn in catalog.principals.values()})


def session_seconds(role: Role) -> int:
    return max(IAM_MIN_SESSION, min(IAM_MAX_SESSION, int(-(-role.max_duration.total_seconds() // 1))))


def managed_roles(catalog: Catalog) -> list[Role]:
    """The catalogue roles that need a role of their own (all but identity_center), sorted by id."""
    return sorted((r for r in catalog.roles.values() if r.strategy is not Strategy.IDENTITY_CENTER),
                  key=lambda r: r.id)


def check_roles(catalog: Catalog, keyturn_role: str) -> list[str]:
    problems = []
    for role in managed_roles(catalog):
        if not role.path.startswith(KEYTURN_PATH):
            problems.append(f"role {role.id}: path {role.path} is outside {KEYTURN_PATH}; Keyturn's policy reaches "
                            f"only roles under it (set path: {KEYTURN_PATH} in the catalogue)")
        if role.role_name.startswith((keyturn_role, "keyturn-manager")):
            problems.append(f"role {role.id}: role_name {role.role_name} is one Keyturn's policy forbids it to "
                            "change (names starting with Keyturn's own roles)")
        if role.group == PEOPLE_GROUP:
            problems.append(f"role {role.id}: group {PEOPLE_GROUP} is the template's own group; use another name")
    return problems


@dataclass
class GroupSpec:
    name: str
    assumes: list[str] = field(default_factory=list)  # role ARNs the group's members may assume


def groups_in(catalog: Catalog, account: str) -> list[GroupSpec]:
    if account not in people_accounts(catalog):
        return []
    out: dict[str, GroupSpec] = {}
    for role in managed_roles(catalog):
        if role.group and role.strategy in (Strategy.GROUP_MEMBERSHIP, Strategy.INLINE_POLICY):
            spec = out.setdefault(role.group, GroupSpec(role.group))
            if role.strategy is Strategy.GROUP_MEMBERSHIP:
                spec.assumes.append(role.arn)
        elif role.strategy is Strategy.TRUST_POLICY and role.account != account:
            out.setdefault(PEOPLE_GROUP, GroupSpec(PEOPLE_GROUP)).assumes.append(role.arn)
    return [out[name] for name in sorted(out)]


def _operator_statement() -> dict[str, Any]:
    return {
        "Sid": "Operators", "Effect": "Allow", "Action": ASSUME,
        "Principal": {"AWS": {"Fn::If": ["HasOperatorPrincipal", {"Ref": "OperatorPrincipalArn"},
                                         {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}]}},
    }


def _role_resource(catalog: Catalog, role: Role, logical: str) -> dict[str, Any]:
    statements = [_operator_statement()]
    if role.strategy is not Strategy.TRUST_POLICY and catalog.principals:
        statements.append({
            "Sid": "PeopleAccounts", "Effect": "Allow", "Action": ASSUME,
            "Principal": {"AWS": [{"Fn::Sub": f"arn:${{AWS::Partition}}:iam::{a}:root"}
                                  for a in people_accounts(catalog)]},
        })
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": role.role_name,
            "Path": role.path,
            "Description": f"{role.name} (Keyturn role {role.id}, {role.strategy.value})"[:1000],
            "MaxSessionDuration": {"Ref": f"{logical}MaxSessionDuration"},
            "AssumeRolePolicyDocument": {"Version": VERSION, "Statement": statements},
            "ManagedPolicyArns": {"Fn::If": [f"{logical}HasPolicies", {"Ref": f"{logical}PolicyArns"},
                                             {"Ref": "AWS::NoValue"}]},
            "Tags": [{"Key": "keyturn:role-id", "Value": role.id}],
        },
    }


def _group_resource(spec: GroupSpec) -> dict[str, Any]:
    props: dict[str, Any] = {"GroupName": spec.name, "Path": KEYTURN_PATH}
    if spec.assumes:
        props["Policies"] = [{"PolicyName": GROUP_POLICY, "PolicyDocument": {"Version": VERSION, "Statement": [
            {"Sid": "AssumeWhileAMember", "Effect": "Allow", "Action": ASSUME, "Resource": sorted(spec.assumes)}]}}]
    return {"Type": "AWS::IAM::Group", "Properties": props}


def account_template(catalog: Catalog, account: str) -> dict[str, Any] | None:
    """The template for `account`, or None when the catalogue needs nothing there."""
    roles = [r for r in managed_roles(catalog) if r.account == account]
    groups = groups_in(catalog, account)
    if not roles and not groups:
        return None
    label = catalog.accounts[account].label if account in catalog.accounts else account
    taken: set[str] = set()
    params: dict[str, Any] = {}
    conditions: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if roles:
        params["OperatorPrincipalArn"] = {
            "Type": "String", "Default": "",
            "Description": "Who else may assume the target roles (the trust statement Keyturn never touches): a "
                           "break-glass role or user ARN. Empty: this account's root, i.e. only principals whose "
                           "own policies allow sts:AssumeRole on the role."}
        conditions["HasOperatorPrincipal"] = {"Fn::Not": [{"Fn::Equals": [{"Ref": "OperatorPrincipalArn"}, ""]}]}
    for role in roles:
        logical = logical_id("Role", role.id, taken)
        params[f"{logical}PolicyArns"] = {
            "Type": "CommaDelimitedList", "Default": "",
            "Description": f"Managed policy ARNs for {role.role_name}: what a person granted {role.id} may do"}
        params[f"{logical}MaxSessionDuration"] = {
            "Type": "Number", "Default": str(session_seconds(role)), "MinValue": IAM_MIN_SESSION,
            "MaxValue": IAM_MAX_SESSION,
            "Description": f"Seconds; the catalogue's longest grant for {role.id} (IAM's minimum is 3600)"}
        conditions[f"{logical}HasPolicies"] = {
            "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": f"{logical}PolicyArns"}]}, ""]}]}
        resources[logical] = _role_resource(catalog, role, logical)
        outputs[f"{logical}Arn"] = {"Description": f"catalogue role {role.id}",
                                    "Value": {"Fn::GetAtt": [logical, "Arn"]}}
    for spec in groups:
        resources[logical_id("Group", spec.name, taken)] = _group_resource(spec)
    template: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Keyturn target roles and groups for account {label} ({account}), from the catalogue",
    }
    if params:
        template["Parameters"] = params
    if conditions:
        template["Conditions"] = conditions
    template["Resources"] = resources
    if outputs:
        template["Outputs"] = outputs
    return template
