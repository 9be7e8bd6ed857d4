"""Sign-in roles as IAM has them: a person's permission-set (or federation) role's ARN and unique id.

Read at every sync, never cached from the catalogue: the unique id is what pins `aws:userid`, and a role
deleted and re-created under the same name has a new one (the old pin then admits nobody: fail closed).
"""

from __future__ import annotations

from service.aws.clients import AwsClients
from service.aws.errors import is_not_found
from service.core.identity import Identity, IdentityKind, Pin, ResolvedRole, SignInRole, pin_for

SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"


class IdentityUnresolved(Exception):
    """A sign-in role of this person is not in IAM: nothing can pin them, so their grant cannot be written."""


def _by_arn(clients: AwsClients, role: SignInRole) -> ResolvedRole:
    name = str(role.arn).rsplit("/", 1)[-1]
    try:
        found = clients.iam(role.account).get_role(RoleName=name)["Role"]
    except Exception as exc:
        if is_not_found(exc):
            raise IdentityUnresolved(f"sign-in role {role.arn} does not exist") from exc
        raise
    if found["Arn"] != role.arn:
        raise IdentityUnresolved(f"sign-in role {role.arn} is not in IAM (a role {found['Arn']} is)")
    return ResolvedRole(found["Arn"], found["RoleId"])


def _by_permission_set(clients: AwsClients, role: SignInRole) -> ResolvedRole:
    """IAM Identity Center names the role it makes for a permission set AWSReservedSSO_<set>_<16 hex>."""
    prefix = f"AWSReservedSSO_{role.permission_set}_"
    pages = clients.iam(role.account).get_paginator("list_roles").paginate(PathPrefix=SSO_ROLE_PATH)
    found = [r for page in pages for r in page["Roles"]
             if r["RoleName"].startswith(prefix) and "_" not in r["RoleName"][len(prefix):]]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)}"
        raise IdentityUnresolved(
            f"{what} IAM Identity Center role for permission set {role.permission_set} in account {role.account}")
    return ResolvedRole(found[0]["Arn"], found[0]["RoleId"])


def resolve_pin(clients: AwsClients, identity: Identity) -> Pin:
    """The pin of one person, with their sign-in roles read from IAM now (raises IdentityUnresolved)."""
    if identity.kind is IdentityKind.IAM_USER:
        return pin_for(identity)
    roles = tuple(_by_arn(clients, r) if r.arn else _by_permission_set(clients, r) for r in identity.roles)
    return pin_for(identity, roles)
