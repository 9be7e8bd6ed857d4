"""Policy documents Keyturn edits: a role's trust policy and inline policies on users and groups."""

from __future__ import annotations

import json
from typing import Any, Protocol
from urllib.parse import unquote

from service.aws.errors import TargetGone, is_not_found
from service.core.policy import Document, size_without_whitespace

INLINE_POLICY_NAME = "keyturn-access"
# AWS quotas (characters, white space not counted): all inline policies of a user / of a group together.
SESSIONS_POLICY_NAME = "keyturn-revoked-sessions"
USER_INLINE_TOTAL = 2048
GROUP_INLINE_TOTAL = 5120
ROLE_INLINE_TOTAL = 10240


class PolicyDocument(Protocol):
    def read(self) -> Document | None: ...
    def write(self, document: Document) -> None: ...
    def limit_problem(self, document: Document) -> str | None: ...


def _as_dict(raw: Any) -> Document:
    if isinstance(raw, str):
        return dict(json.loads(unquote(raw)))
    return dict(raw)


class TrustPolicy:
    """The trust policy (AssumeRolePolicyDocument) of one role."""

    def __init__(self, iam: Any, role_name: str, max_chars: int = 2048):
        self.iam, self.role_name, self.max_chars = iam, role_name, max_chars

    def read(self) -> Document | None:
        try:
            role = self.iam.get_role(RoleName=self.role_name)["Role"]
        except Exception as exc:
            if is_not_found(exc):
                raise TargetGone(f"role {self.role_name} does not exist") from exc
            raise
        return _as_dict(role["AssumeRolePolicyDocument"])

    def write(self, document: Document) -> None:
        try:
            self.iam.update_assume_role_policy(RoleName=self.role_name, PolicyDocument=json.dumps(document))
        except Exception as exc:
            if is_not_found(exc):
                raise TargetGone(f"role {self.role_name} does not exist") from exc
            raise

    def limit_problem(self, document: Document) -> str | None:
        size = size_without_whitespace(document)
        if size > self.max_chars:
            return f"the trust policy would be {size} characters; the limit is {self.max_chars}"
        if not document.get("Statement"):
            # IAM refuses a trust policy with no statement; Keyturn never owns all of a role's trust.
            return "the trust policy would have no statement left"
        return None


class InlinePolicy:
    """Keyturn's own inline policy on a user or a group; deleted when it has nothing left to say."""

    def __init__(self, iam: Any, *, user: str | None = None, group: str | None = None, role: str | None = None,
                 name: str = INLINE_POLICY_NAME):
        owners = [(k, v) for k, v in (("user", user), ("group", group), ("role", role)) if v is not None]
        if len(owners) != 1:
            raise ValueError("give exactly one of user, group or role")
        self.iam, self.name = iam, name
        self.noun, self.owner = owners[0]

    def _who(self) -> dict[str, str]:
        return {f"{self.noun.capitalize()}Name": self.owner}

    def _call(self, verb: str, **kwargs: Any) -> Any:
        method = f"{verb}_{self.noun}_policy" if verb != "list" else f"list_{self.noun}_policies"
        return getattr(self.iam, method)(**self._who(), **kwargs)

    def _exists(self) -> None:
        try:
            if self.noun == "group":
                self.iam.get_group(GroupName=self.owner, MaxItems=1)
            else:
                getattr(self.iam, f"get_{self.noun}")(**self._who())
        except Exception as exc:
            if is_not_found(exc):
                raise TargetGone(f"{self.noun} {self.owner} does not exist") from exc
            raise

    def read(self) -> Document | None:
        try:
            return _as_dict(self._call("get", PolicyName=self.name)["PolicyDocument"])
        except Exception as exc:
            if is_not_found(exc):
                self._exists()
                return None
            raise

    def write(self, document: Document) -> None:
        try:
            if document.get("Statement"):
                self._call("put", PolicyName=self.name, PolicyDocument=json.dumps(document))
            else:
                self._call("delete", PolicyName=self.name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            if document.get("Statement"):
                self._exists()
                raise
            # deleting a policy that is already gone is done

    def limit_problem(self, document: Document) -> str | None:
        if not document.get("Statement"):
            return None
        others = 0
        for name in self._call("list").get("PolicyNames", []):
            if name != self.name:
                policy = self._call("get", PolicyName=name)["PolicyDocument"]
                others += size_without_whitespace(_as_dict(policy))
        limit = {"user": USER_INLINE_TOTAL, "group": GROUP_INLINE_TOTAL}.get(self.noun, ROLE_INLINE_TOTAL)
        total = others + size_without_whitespace(document)
        if total > limit:
            return f"inline policies would total {total} characters; the limit is {limit}"
        return None
