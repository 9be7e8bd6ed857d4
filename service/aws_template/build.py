"""Build every template the catalogue needs (pure: a Catalog in, dicts out; the policies read from config/iam).

* `keyturn-service`: Keyturn's own role, in Keyturn's account, with keyturn-policy.json, plus
  inline-users-policy.json when Keyturn's own account holds IAM users some role gives an inline policy to,
  and identity-center-policy.json when the catalogue uses IAM Identity Center.
* `keyturn-manager`: the manager role, one template for every other account (a StackSet across an
  organisation): manager-trust-policy.json trusting Keyturn's role in the KeyturnAccountId parameter,
  manager-role-policy.json, and inline-users-policy.json where the InlinePolicyOnUsers parameter says so.
* `account-<id>`: per account, the target roles and groups (accounts.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.aws_template.accounts import PEOPLE_GROUP, account_template, check_roles, groups_in, people_accounts
from service.aws_template.policies import (
    DEFAULT_KEYTURN_ROLE,
    IDENTITY_CENTER_POLICY,
    INLINE_USERS_POLICY,
    KEYTURN_PATH,
    KEYTURN_POLICY,
    MANAGER_POLICY,
    MANAGER_ROLE,
    TemplateError,
    compact_size,
    keyturn_document,
    manager_trust,
)
from service.catalog.model import Catalog, Strategy

ACCOUNT_ID = re.compile(r"[0-9]{12}")
ROLE_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{1,64}")
INLINE_QUOTA = 10240  # IAM: all inline policies of one role together, white space not counted
MANAGER_ARN = re.compile(rf"arn:aws[a-z-]*:iam::([0-9]{{12}}):role{KEYTURN_PATH}{MANAGER_ROLE}")


@dataclass
class TemplateSet:
    keyturn_account: str
    keyturn_role: str
    templates: dict[str, dict[str, Any]]  # stack name -> template
    managed_accounts: list[str]  # accounts reached through keyturn-manager
    inline_users_accounts: list[str]  # manager accounts whose instance needs InlinePolicyOnUsers=true
    notes: list[str] = field(default_factory=list)


def keyturn_account_of(catalog: Catalog, given: str | None) -> str:
    if given:
        if not ACCOUNT_ID.fullmatch(given):
            raise TemplateError([f"--keyturn-account {given!r} is not a 12-digit account id"])
        return given
    own = sorted(a.id for a in catalog.accounts.values() if not a.manager_role_arn)
    if len(own) == 1:
        return own[0]
    raise TemplateError(["give --keyturn-account: the catalogue has "
                         + ("no account" if not own else f"{len(own)} accounts ({', '.join(own)})")
                         + " without manager_role_arn, and Keyturn's own account is the one account without it"])


def _inline_on_users(catalog: Catalog) -> bool:
    return any(r.strategy is Strategy.INLINE_POLICY and not r.group for r in catalog.roles.values())


def _uses_identity_center(catalog: Catalog) -> bool:
    return catalog.identity_center is not None or any(
        r.strategy is Strategy.IDENTITY_CENTER for r in catalog.roles.values())


def _check_accounts(catalog: Catalog, keyturn_account: str) -> list[str]:
    problems = []
    for acct in sorted(catalog.accounts.values(), key=lambda a: a.id):
        if acct.manager_role_arn is None:
            if acct.id != keyturn_account:
                problems.append(f"account {acct.label}: no manager_role_arn, and it is not Keyturn's account "
                                f"({keyturn_account}); set manager_role_arn: "
                                f"arn:aws:iam::{acct.id}:role{KEYTURN_PATH}{MANAGER_ROLE}")
            continue
        m = MANAGER_ARN.fullmatch(acct.manager_role_arn)
        if not m or m.group(1) != acct.id:
            problems.append(f"account {acct.label}: manager_role_arn {acct.manager_role_arn} is not "
                            f"arn:aws:iam::{acct.id}:role{KEYTURN_PATH}{MANAGER_ROLE}, the only role "
                            f"{KEYTURN_POLICY} lets Keyturn assume")
    return problems


def _policy(name: str, document: dict[str, Any]) -> dict[str, Any]:
    return {"PolicyName": name, "PolicyDocument": document}


def keyturn_template(catalog: Catalog, account: str, role_name: str, iam_dir: Path | None) -> dict[str, Any]:
    policies = [_policy(role_name, keyturn_document(KEYTURN_POLICY, role_name, iam_dir))]
    if _inline_on_users(catalog) and account in people_accounts(catalog):
        policies.append(_policy("keyturn-inline-users", keyturn_document(INLINE_USERS_POLICY, role_name, iam_dir)))
    if _uses_identity_center(catalog):
        policies.append(_policy("keyturn-identity-center",
                                keyturn_document(IDENTITY_CENTER_POLICY, role_name, iam_dir)))
    size = sum(compact_size(p["PolicyDocument"]) for p in policies)
    if size > INLINE_QUOTA:
        raise TemplateError([f"Keyturn's inline policies total {size} characters, over IAM's {INLINE_QUOTA}"])
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Keyturn's own role ({KEYTURN_PATH}{role_name}) and its least-privilege policy "
                       f"(config/iam), in Keyturn's account {account}",
        "Parameters": {
            "TrustedService": {
                "Type": "String", "Default": "ecs-tasks.amazonaws.com",
                "Description": "The AWS service that runs Keyturn and assumes this role (ecs-tasks.amazonaws.com, "
                               "ec2.amazonaws.com: an instance profile is made too); ignored when "
                               "TrustedPrincipalArn is set"},
            "TrustedPrincipalArn": {
                "Type": "String", "Default": "",
                "Description": "Instead of a service: the role or user ARN that runs Keyturn and assumes this role"},
        },
        "Conditions": {
            "HasTrustedPrincipal": {"Fn::Not": [{"Fn::Equals": [{"Ref": "TrustedPrincipalArn"}, ""]}]},
            "OnEc2": {"Fn::And": [{"Fn::Equals": [{"Ref": "TrustedService"}, "ec2.amazonaws.com"]},
                                  {"Fn::Equals": [{"Ref": "TrustedPrincipalArn"}, ""]}]},
        },
        "Resources": {
            "KeyturnRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": role_name, "Path": KEYTURN_PATH,
                "Description": "Keyturn: grants and revokes catalogue access",
                "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "RunsKeyturn", "Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"Fn::If": ["HasTrustedPrincipal", {"AWS": {"Ref": "TrustedPrincipalArn"}},
                                             {"Service": {"Ref": "TrustedService"}}]}}]},
                "Policies": policies,
            }},
            "KeyturnInstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Condition": "OnEc2", "Properties": {
                "InstanceProfileName": role_name, "Path": KEYTURN_PATH, "Roles": [{"Ref": "KeyturnRole"}]}},
        },
        "Outputs": {"KeyturnRoleArn": {"Description": "Keyturn's role: run Keyturn with it",
                                       "Value": {"Fn::GetAtt": ["KeyturnRole", "Arn"]}}},
    }


def manager_template(role_name: str, keyturn_account: str, iam_dir: Path | None) -> dict[str, Any]:
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Keyturn's manager role ({KEYTURN_PATH}{MANAGER_ROLE}) for an account Keyturn manages; "
                       "deploy it to every such account (a service-managed StackSet across the organisation)",
        "Parameters": {
            "KeyturnAccountId": {"Type": "String", "Default": keyturn_account, "AllowedPattern": "^[0-9]{12}$",
                                 "Description": f"The account Keyturn's role ({role_name}) lives in"},
            "InlinePolicyOnUsers": {"Type": "String", "Default": "false", "AllowedValues": ["true", "false"],
                                    "Description": "true in accounts whose IAM users a catalogue role gives an "
                                                   "inline policy (inline_policy without group)"},
        },
        "Conditions": {"WithInlineUsers": {"Fn::Equals": [{"Ref": "InlinePolicyOnUsers"}, "true"]}},
        "Resources": {
            "ManagerRole": {"Type": "AWS::IAM::Role", "Properties": {
                "RoleName": MANAGER_ROLE, "Path": KEYTURN_PATH,
                "Description": "Keyturn: grants and revokes catalogue access in this account",
                "AssumeRolePolicyDocument": manager_trust(role_name, iam_dir),
                "Policies": [_policy(MANAGER_ROLE, keyturn_document(MANAGER_POLICY, role_name, iam_dir))],
            }},
            "InlineUsersPolicy": {"Type": "AWS::IAM::Policy", "Condition": "WithInlineUsers", "Properties": {
                "PolicyName": "keyturn-inline-users", "Roles": [{"Ref": "ManagerRole"}],
                "PolicyDocument": keyturn_document(INLINE_USERS_POLICY, role_name, iam_dir)}},
        },
        "Outputs": {"ManagerRoleArn": {"Value": {"Fn::GetAtt": ["ManagerRole", "Arn"]}}},
    }


def build_templates(catalog: Catalog, *, keyturn_account: str | None = None,
                    keyturn_role: str = DEFAULT_KEYTURN_ROLE, iam_dir: Path | None = None) -> TemplateSet:
    """Every template the catalogue needs; TemplateError lists everything that stands in the way."""
    problems = []
    if not ROLE_NAME.fullmatch(keyturn_role) or keyturn_role.startswith(MANAGER_ROLE):
        problems.append(f"--keyturn-role-name {keyturn_role!r}: 1-64 of A-Z a-z 0-9 _+=,.@-, not {MANAGER_ROLE}")
    own = keyturn_account_of(catalog, keyturn_account)
    problems += _check_accounts(catalog, own) + check_roles(catalog, keyturn_role)
    if problems:
        raise TemplateError(problems)
    managed = sorted(a.id for a in catalog.accounts.values() if a.manager_role_arn)
    templates = {"keyturn-service": keyturn_template(catalog, own, keyturn_role, iam_dir)}
    if managed:
        templates["keyturn-manager"] = manager_template(keyturn_role, own, iam_dir)
    notes = []
    for account in sorted(set(catalog.accounts) | {r.account for r in catalog.roles.values()}):
        template = account_template(catalog, account)
        if template is not None:
            templates[f"account-{account}"] = template
    inline_users = [a for a in people_accounts(catalog) if a in managed] if _inline_on_users(catalog) else []
    if _inline_on_users(catalog):
        notes.append("tag every IAM user who may get an inline_policy grant: aws iam tag-user --user-name <name> "
                     "--tags Key=keyturn-inline-policy,Value=allowed")
    with_people = [a for a in people_accounts(catalog) if any(g.name == PEOPLE_GROUP for g in groups_in(catalog, a))]
    if with_people:
        notes.append(f"add every person's IAM user to the group {PEOPLE_GROUP} in {', '.join(with_people)}: across "
                     "accounts IAM also asks their own policies for sts:AssumeRole on the trust_policy roles")
    unmanaged = [a for a in people_accounts(catalog) if a not in catalog.accounts]
    if unmanaged:
        notes.append(f"IAM users live in accounts the catalogue does not manage ({', '.join(unmanaged)}): no groups "
                     "are made there and Keyturn cannot act there")
    if any(r.strategy is Strategy.IDENTITY_CENTER for r in catalog.roles.values()):
        notes.append("identity_center roles: tag each permission set a role hands out with keyturn-assignable=true "
                     "(config/iam/README.md); no IAM role is made for them")
    return TemplateSet(own, keyturn_role, templates, managed, inline_users, notes)
