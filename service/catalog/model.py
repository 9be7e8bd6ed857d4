"""Frozen catalogue values the rest of Keyturn reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from urllib.parse import urlencode

from service.catalog.email_lookup import EmailLookup
from service.core.identity import Identity
from service.core.rules import RoleRules


class Strategy(StrEnum):
    TRUST_POLICY = "trust_policy"
    GROUP_MEMBERSHIP = "group_membership"
    INLINE_POLICY = "inline_policy"
    IDENTITY_CENTER = "identity_center"


@dataclass(frozen=True)
class Account:
    id: str
    alias: str | None = None
    manager_role_arn: str | None = None

    @property
    def label(self) -> str:
        return self.alias or self.id


@dataclass(frozen=True)
class Role:
    id: str
    name: str
    account: str  # 12-digit account id
    role_name: str
    path: str = "/"
    strategy: Strategy = Strategy.TRUST_POLICY
    group: str | None = None  # group_membership: the IAM group; inline_policy: put the policy on it
    permission_set: str | None = None  # identity_center: the permission set's name
    approvers: frozenset[str] = frozenset()
    approvers_channel: str | None = None
    min_approvals: int = 1
    auto_approve: bool = False
    default_duration: timedelta = timedelta(hours=1)
    max_duration: timedelta = timedelta(hours=4)
    require_reason: bool = True
    require_mfa: bool = False
    allow_self_approval: bool = False
    require_security_key: bool = False  # every approval confirmed with a security key (service/console)
    break_glass_requires_security_key: bool = False  # only the requester's own break-glass approval
    color: str | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:iam::{self.account}:role{self.path}{self.role_name}"

    @property
    def path_and_name(self) -> str:
        """What the console's Switch Role form calls the role name: path without the leading slash."""
        return f"{self.path.lstrip('/')}{self.role_name}"

    def rules(self) -> RoleRules:
        users = frozenset(a for a in self.approvers if not a.startswith("S"))
        groups = frozenset(a for a in self.approvers if a.startswith("S"))
        return RoleRules(
            role_id=self.id,
            approvers=users,
            approver_groups=groups,
            min_approvals=self.min_approvals,
            auto_approve=self.auto_approve,
            allow_self_approval=self.allow_self_approval,
            require_reason=self.require_reason,
            default_duration=self.default_duration,
            max_duration=self.max_duration,
            require_security_key=self.require_security_key,
            break_glass_requires_security_key=self.break_glass_requires_security_key,
        )

    def switch_role_url(self, account_label: str | None = None) -> str:
        """The AWS console's pre-filled Switch Role link for this role."""
        params = {
            "account": self.account,
            "roleName": self.path_and_name,
            "displayName": f"{self.name} ({account_label or self.account})"[:64],
        }
        if self.color:
            params["color"] = self.color
        return "https://signin.aws.amazon.com/switchrole?" + urlencode(params)


@dataclass(frozen=True)
class IdentityCenter:
    """The IAM Identity Center instance the `identity_center` strategy and `sso_user`s live in."""

    instance_arn: str
    identity_store_id: str
    region: str | None = None
    portal_url: str | None = None


@dataclass(frozen=True)
class Catalog:
    accounts: dict[str, Account]
    roles: dict[str, Role]
    identities: dict[str, Identity]  # Slack user id -> the one person AWS knows them as
    admins: frozenset[str] = frozenset()
    audit_channel: str | None = None
    trust_policy_max_chars: int = 2048
    request_timeout: timedelta = timedelta(hours=24)
    session_cut_pages: int = 4  # managed policies per role for session cuts, besides its inline policy
    max_pending_per_person: int = 5  # requests one person may have waiting for approval at once
    reminder_after: timedelta = timedelta(minutes=30)  # first reminder; then doubling (backoff)
    identity_center: IdentityCenter | None = None
    email_lookup: EmailLookup | None = None  # opt-in: unmapped people found by Slack email (service/people)
    extra: dict[str, str] = field(default_factory=dict)

    def role(self, role_id: str) -> Role | None:
        return self.roles.get(role_id)

    def identity_for(self, user_id: str) -> Identity | None:
        return self.identities.get(user_id)

    @property
    def principals(self) -> dict[str, str]:
        """Slack user id -> IAM user ARN, for the people who are IAM users."""
        return {slack: str(i.arn) for slack, i in self.identities.items() if i.is_user}

    def account(self, account_id: str) -> Account | None:
        return self.accounts.get(account_id)

    def roles_for(self, user_id: str) -> list[Role]:
        """Roles this user may request: everyone mapped to a principal may ask for any role."""
        if user_id not in self.identities:
            return []
        return sorted(self.roles.values(), key=lambda r: r.id)
