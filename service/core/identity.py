"""Who receives access: one person, as AWS knows them. Pure values; no AWS call is made here.

A person reaches a target role in one of three ways, and each owned statement pins exactly that person:

* `iam_user`: an IAM user. AWS names their sessions of the target role by the user name, so the trust
  statement names the user ARN and pins `sts:RoleSessionName` to it.
* `sso_user`: someone who signs in through IAM Identity Center, landing in a permission-set role
  (`AWSReservedSSO_<set>_<hash>`) whose session name is their Identity Center user name. The trust
  statement names that role and pins `aws:userid` = `<role unique id>:<user name>`, so another person's
  session of the same permission-set role does not match.
* `iam_role`: a federated role session whose session name is the person (a SAML or OIDC role).
  Pinned the same way as an SSO person.

`Identity.key` is what a request and a grant remember. It is compared with the catalogue's current
identity for the person when an approval lands and on every sync, never trusted on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# IAM's role session name: 2-64 characters of [\w+=,.@-], ASCII only (re.ASCII; checked with fullmatch).
SESSION_NAME = re.compile(r"[A-Za-z0-9_+=,.@-]{2,64}")


class IdentityKind(StrEnum):
    IAM_USER = "iam_user"
    SSO_USER = "sso_user"
    IAM_ROLE = "iam_role"


@dataclass(frozen=True)
class SignInRole:
    """A role a person signs in with: by ARN, or (SSO) by account + permission set name."""

    account: str
    arn: str | None = None
    permission_set: str | None = None

    @property
    def label(self) -> str:
        return self.arn or f"{self.account}:{self.permission_set}"


@dataclass(frozen=True)
class Identity:
    slack_id: str
    kind: IdentityKind
    session_name: str  # what AWS calls this person's session of the target role
    arn: str | None = None  # iam_user: the user ARN
    user_name: str | None = None  # sso_user: the Identity Center user name
    roles: tuple[SignInRole, ...] = ()  # sso_user: the permission-set roles; iam_role: the one role

    @property
    def key(self) -> str:
        """Stable and unique per person: stored on requests and grants, and the lease key on targets
        that hold one statement per person."""
        if self.kind is IdentityKind.IAM_USER:
            return str(self.arn)
        if self.kind is IdentityKind.SSO_USER:
            return f"sso_user:{self.user_name}"
        return f"iam_role:{self.roles[0].label}#{self.session_name}"

    @property
    def is_user(self) -> bool:
        return self.kind is IdentityKind.IAM_USER

    @property
    def label(self) -> str:
        if self.kind is IdentityKind.IAM_USER:
            return str(self.arn)
        if self.kind is IdentityKind.SSO_USER:
            return f"{self.user_name} (IAM Identity Center)"
        return f"{self.roles[0].label} as {self.session_name}"


@dataclass(frozen=True)
class ResolvedRole:
    """A sign-in role as IAM has it: its ARN and unique id (AROA…), read from IAM at sync time."""

    arn: str
    unique_id: str


@dataclass(frozen=True)
class Pin:
    """Everything an owned statement needs to admit exactly one person."""

    principals: tuple[str, ...]  # the Principal ARNs
    session_name: str
    user_ids: tuple[str, ...] = ()  # aws:userid values (role-based identities)
    user_name: str | None = None  # aws:username (IAM users; used on group policies)


def pin_for(identity: Identity, roles: tuple[ResolvedRole, ...] = ()) -> Pin:
    """The pin of an identity, given its sign-in roles as resolved in IAM (none for an IAM user)."""
    if identity.kind is IdentityKind.IAM_USER:
        return Pin(principals=(str(identity.arn),), session_name=identity.session_name,
                   user_name=str(identity.arn).rsplit("/", 1)[-1])
    if not roles:
        raise ValueError(f"{identity.label}: no sign-in role resolved; nothing can pin this person")
    ordered = tuple(sorted(roles, key=lambda r: r.arn))
    return Pin(
        principals=tuple(r.arn for r in ordered),
        session_name=identity.session_name,
        user_ids=tuple(f"{r.unique_id}:{identity.session_name}" for r in ordered),
    )
