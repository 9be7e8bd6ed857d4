"""Which IAM document (target) a grant lives in, and the key of its lease there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from service.core.identity import Identity, IdentityKind

_ARN = re.compile(
    r"^arn:(?P<part>aws[a-z-]*):iam::(?P<account>\d{12}):(?P<kind>user|role)(?P<path>/.*/|/)?(?P<name>[^/]+)$"
)


class TargetKind(StrEnum):
    TRUST_POLICY = "trust_policy"  # the role's trust policy; one statement per principal
    GROUP = "group_membership"  # an IAM group's members; one membership per user
    INLINE_USER = "inline_user"  # an inline policy on the requester's user; one statement per role
    INLINE_GROUP = "inline_group"  # an inline policy on a configured group; one statement per role
    ROLE_SESSIONS = "role_sessions"  # a deny on the role for sessions issued before a grant ended
    IDENTITY_CENTER = "identity_center"  # account assignments of one permission set in one account


class TargetError(ValueError):
    """The principal cannot be given access this way (e.g. a role where a user is needed)."""


@dataclass(frozen=True)
class TargetRef:
    kind: TargetKind
    account: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.account}:{self.name}"

    @classmethod
    def parse(cls, key: str) -> TargetRef:
        kind, account, name = key.split(":", 2)
        return cls(TargetKind(kind), account, name)


@dataclass(frozen=True)
class Principal:
    arn: str
    account: str
    kind: str  # "user" or "role"
    name: str


def parse_principal(arn: str) -> Principal:
    match = _ARN.match(arn)
    if not match:
        raise TargetError(f"{arn!r} is not an IAM user or role ARN")
    return Principal(arn=arn, account=match["account"], kind=match["kind"], name=match["name"])


def target_for(
    *, strategy: str, role_account: str, role_name: str, role_arn: str, group: str | None,
    identity: Identity, permission_set: str | None = None,
) -> tuple[TargetRef, str]:
    """(target, lease key) for giving one person access to a role with `strategy`.

    The lease key names what one owned unit on the target is for: the person (trust policies, Identity
    Center assignments), the user (group memberships), the role (a user's own inline policy) or the role
    and the member (a group's inline policy, where each statement is pinned to one member)."""
    if strategy == "trust_policy":
        return TargetRef(TargetKind.TRUST_POLICY, role_account, role_name), identity.key
    if strategy == "identity_center":
        if identity.kind is not IdentityKind.SSO_USER:
            raise TargetError(f"strategy identity_center needs an IAM Identity Center user, not {identity.label}")
        if not permission_set:
            raise TargetError("strategy identity_center needs a permission set")
        return TargetRef(TargetKind.IDENTITY_CENTER, role_account, permission_set), identity.key
    if identity.kind is not IdentityKind.IAM_USER:
        raise TargetError(f"strategy {strategy} needs an IAM user, not {identity.label}")
    principal = parse_principal(str(identity.arn))
    if strategy == "group_membership":
        if not group:
            raise TargetError("strategy group_membership needs a group")
        # Groups hold users of their own account: the group lives where the user does.
        return TargetRef(TargetKind.GROUP, principal.account, group), principal.name
    if strategy == "inline_policy":
        if group:
            ref = TargetRef(TargetKind.INLINE_GROUP, principal.account, group)
            return ref, group_lease_key(role_arn, principal.name)
        return TargetRef(TargetKind.INLINE_USER, principal.account, principal.name), role_arn
    raise TargetError(f"unknown strategy {strategy!r}")


def group_lease_key(role_arn: str, user_name: str) -> str:
    """A group policy's statement is for one role and one member: never for the whole group."""
    return f"{role_arn}#{user_name}"


def split_group_lease_key(key: str) -> tuple[str, str | None]:
    """(role ARN, member user name) of a group policy's lease key; no member in the pre-identity form."""
    role_arn, _, user = key.rpartition("#")  # a role path may hold '#'; a user name never does
    return (role_arn, user) if role_arn else (key, None)


def sessions_target(role_account: str, role_name: str) -> TargetRef:
    """Where the deny for a role's already-issued sessions lives: an inline policy on the role itself."""
    return TargetRef(TargetKind.ROLE_SESSIONS, role_account, role_name)
