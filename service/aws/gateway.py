"""From a target reference to the adapter that reads and writes it, in the right account."""

from __future__ import annotations

from typing import Any

from service.aws.clients import AwsClients
from service.aws.documents import SESSIONS_POLICY_NAME, InlinePolicy, PolicyDocument, TrustPolicy
from service.aws.groups import GroupMembers
from service.aws.identity_center import AccountAssignments
from service.aws.session_pages import SessionPages
from service.catalog.model import IdentityCenter
from service.core.targets import TargetKind, TargetRef


class AwsGateway:
    def __init__(self, clients: AwsClients, *, trust_policy_max_chars: int = 2048, session_cut_pages: int = 4):
        self.clients = clients
        self.trust_policy_max_chars = trust_policy_max_chars
        self.session_cut_pages = session_cut_pages  # managed policies for session cuts, besides the inline one

    def document(self, ref: TargetRef) -> PolicyDocument:
        iam = self.clients.iam(ref.account)
        if ref.kind is TargetKind.TRUST_POLICY:
            return TrustPolicy(iam, ref.name, self.trust_policy_max_chars)
        if ref.kind is TargetKind.INLINE_USER:
            return InlinePolicy(iam, user=ref.name)
        if ref.kind is TargetKind.INLINE_GROUP:
            return InlinePolicy(iam, group=ref.name)
        if ref.kind is TargetKind.ROLE_SESSIONS:
            return InlinePolicy(iam, role=ref.name, name=SESSIONS_POLICY_NAME)
        raise ValueError(f"{ref.key} is not a policy document")

    def group(self, ref: TargetRef) -> GroupMembers:
        if ref.kind is not TargetKind.GROUP:
            raise ValueError(f"{ref.key} is not a group")
        return GroupMembers(self.clients.iam(ref.account), ref.name)

    def session_pages(self, ref: TargetRef) -> SessionPages:
        """Where a role's session cuts live: its inline policy and Keyturn's managed policies on it."""
        return SessionPages(self.clients.iam(ref.account), ref.account, ref.name, self.session_cut_pages)

    def role_info(self, ref: TargetRef) -> dict[str, Any]:
        """The role's unique id and MaxSessionDuration (raises if it does not exist)."""
        role: dict[str, Any] = self.clients.iam(ref.account).get_role(RoleName=ref.name)["Role"]
        return role

    def identity_center(self, ref: TargetRef, center: IdentityCenter) -> AccountAssignments:
        """The account assignments of one permission set in one account, in the catalogue's instance."""
        if ref.kind is not TargetKind.IDENTITY_CENTER:
            raise ValueError(f"{ref.key} is not an Identity Center target")
        return AccountAssignments(self.clients.sso_admin(center.region), self.clients.identitystore(center.region),
                                  center, account=ref.account, permission_set=ref.name)
