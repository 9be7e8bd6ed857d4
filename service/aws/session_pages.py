"""Where a role's session cuts live: pages, each a policy on the role with its own size quota.

Page 0 is the role's inline policy `keyturn-revoked-sessions` (all inline policies of a role share
10,240 characters, so its room is what the others leave). Pages 1..N are customer-managed policies
`keyturn-sessions-<role>-<n>` under the path `/session-cuts/`, attached to the role, 6,144 characters
each (IAM's quota for one managed policy; a role may have 10 attached by default, so N is kept small).
README ("Cutting sessions that are already open") has the arithmetic.
"""

from __future__ import annotations

import json
from typing import Any

from service.aws.documents import ROLE_INLINE_TOTAL, SESSIONS_POLICY_NAME, InlinePolicy, _as_dict
from service.aws.errors import TargetGone, is_not_found
from service.core.policy import Document, size_without_whitespace

MANAGED_POLICY_MAX = 6144
MANAGED_PATH = "/session-cuts/"
MAX_VERSIONS = 5  # IAM keeps at most five versions of a managed policy


class SessionPages:
    def __init__(self, iam: Any, account: str, role_name: str, managed_pages: int):
        self.iam, self.account, self.role_name, self.managed_pages = iam, account, role_name, managed_pages
        self.inline = InlinePolicy(iam, role=role_name, name=SESSIONS_POLICY_NAME)

    def policy_name(self, page: int) -> str:
        return f"keyturn-sessions-{self.role_name}-{page}"[:128]

    def policy_arn(self, page: int) -> str:
        return f"arn:aws:iam::{self.account}:policy{MANAGED_PATH}{self.policy_name(page)}"

    def pages(self) -> list[int]:
        return list(range(self.managed_pages + 1))

    # ---- reading ------------------------------------------------------------------------------------
    def read(self, page: int) -> Document | None:
        if page == 0:
            return self.inline.read()
        try:
            policy = self.iam.get_policy(PolicyArn=self.policy_arn(page))["Policy"]
            version = self.iam.get_policy_version(PolicyArn=self.policy_arn(page),
                                                  VersionId=policy["DefaultVersionId"])["PolicyVersion"]
        except Exception as exc:
            if is_not_found(exc):
                return None
            raise
        return _as_dict(version["Document"])

    def read_all(self) -> dict[int, Document | None]:
        """Each page as IAM applies it: a managed policy not attached to the role (a crash between the
        create and the attach) counts as empty, so the next write attaches it."""
        attached = self.attached_arns()
        out: dict[int, Document | None] = {}
        for page in self.pages():
            out[page] = self.read(page) if page == 0 or self.policy_arn(page) in attached else None
        return out

    def capacity(self) -> dict[int, int]:
        """Characters each page may hold. Page 0: what the role's other inline policies leave."""
        others = 0
        for name in self.iam.list_role_policies(RoleName=self.role_name).get("PolicyNames", []):
            if name != SESSIONS_POLICY_NAME:
                doc = self.iam.get_role_policy(RoleName=self.role_name, PolicyName=name)["PolicyDocument"]
                others += size_without_whitespace(_as_dict(doc))
        out = {0: max(0, ROLE_INLINE_TOTAL - others)}
        out.update({page: MANAGED_POLICY_MAX for page in range(1, self.managed_pages + 1)})
        return out

    def attached_arns(self) -> set[str]:
        try:
            pages = self.iam.get_paginator("list_attached_role_policies").paginate(RoleName=self.role_name)
            return {p["PolicyArn"] for page in pages for p in page["AttachedPolicies"]}
        except Exception as exc:
            if is_not_found(exc):
                raise TargetGone(f"role {self.role_name} does not exist") from exc
            raise

    def attached(self, page: int) -> bool:
        return self.policy_arn(page) in self.attached_arns()

    # ---- writing ------------------------------------------------------------------------------------
    def write(self, page: int, document: Document) -> None:
        """Make the page hold `document`; a page with no statement left is removed."""
        if page == 0:
            self.inline.write(document)
            return
        arn = self.policy_arn(page)
        if not document.get("Statement"):
            self._remove(arn)
            return
        body = json.dumps(document)
        try:
            versions = self.iam.list_policy_versions(PolicyArn=arn)["Versions"]
        except Exception as exc:
            if not is_not_found(exc):
                raise
            self.iam.create_policy(PolicyName=self.policy_name(page), Path=MANAGED_PATH, PolicyDocument=body,
                                   Description=f"Keyturn: session cuts for role {self.role_name} (do not edit)")
        else:
            if len(versions) >= MAX_VERSIONS:
                oldest = min((v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"])
                self.iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
            self.iam.create_policy_version(PolicyArn=arn, PolicyDocument=body, SetAsDefault=True)
        if not self.attached(page):
            try:
                self.iam.attach_role_policy(RoleName=self.role_name, PolicyArn=arn)
            except Exception as exc:
                if is_not_found(exc):
                    raise TargetGone(f"role {self.role_name} does not exist") from exc
                raise

    def _remove(self, arn: str) -> None:
        try:
            self.iam.detach_role_policy(RoleName=self.role_name, PolicyArn=arn)
        except Exception as exc:
            if not is_not_found(exc):
                raise
        try:
            for v in self.iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                if not v["IsDefaultVersion"]:
                    self.iam.delete_policy_version(PolicyArn=arn, VersionId=v["VersionId"])
            self.iam.delete_policy(PolicyArn=arn)
        except Exception as exc:
            if not is_not_found(exc):
                raise
