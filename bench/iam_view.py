"""IAM as it is now, judged by an IAM evaluator: moto stores policies but evaluates no condition, so whether a
person may still get in is decided by tests/support/iam_eval.py over the documents read back from moto
(the role's trust policy and every permission policy on it: inline and attached managed, where the session
cuts live). Plain Python, imported from the tests' support package as the integration tests do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from bench.catalogue import principal, user_name
from tests.support import iam_eval

# What the role itself lets a session do (the bench roles carry no permission policy of their own): the
# session cuts are judged against a role that would otherwise allow everything, as tests/integration does.
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _doc(raw: Any) -> dict[str, Any]:
    return json.loads(unquote(raw)) if isinstance(raw, str) else dict(raw)


@dataclass
class RoleView:
    """One read of a role: its trust policy and permission policies, and when the read was made."""

    arn: str
    role_id: str
    trust: dict[str, Any]
    policies: list[dict[str, Any]]
    read_at: float  # wall clock, the middle of the read

    def new_session_denied(self, user: int, at: datetime) -> bool:
        """Is the person's `sts:AssumeRole` (as themselves, an IAM user) refused at `at`?"""
        request = iam_eval.user_assumes(principal(user), self.arn, at=at, session_name=user_name(user))
        return not iam_eval.may_assume(self.trust, [], request).allowed

    def open_session_denied(self, user: int, *, issued_at: datetime, at: datetime) -> bool:
        """Is a call by the person's session, issued at `issued_at`, refused at `at`?"""
        request = iam_eval.session_calls(self.arn, self.role_id, user_name(user), issued_at=issued_at, at=at)
        return not iam_eval.session_may([ALLOW_ALL, *self.policies], request).allowed

    def both_denied(self, user: int, *, issued_at: datetime, at: datetime | None = None) -> bool:
        when = at or self.read_moment
        return self.new_session_denied(user, when) and self.open_session_denied(user, issued_at=issued_at, at=when)

    def both_allowed(self, user: int, *, issued_at: datetime, at: datetime | None = None) -> bool:
        when = at or self.read_moment
        return (not self.new_session_denied(user, when)
                and not self.open_session_denied(user, issued_at=issued_at, at=when))

    def has_statement(self, user: int) -> bool:
        """Does the trust policy still carry a Keyturn statement for the person (clean-up not done yet)?"""
        from service.core.policy import split

        return any(principal(user) in json.dumps(s.get("Principal")) for s in split(self.trust)[1])

    @property
    def read_moment(self) -> datetime:
        return datetime.fromtimestamp(self.read_at, UTC)


def read_role(iam: Any, name: str) -> RoleView:
    """The role's documents as IAM holds them now (moto, directly: not counted by the proxy)."""
    started = time.time()
    role = iam.get_role(RoleName=name)["Role"]
    docs = [_doc(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])
            for p in iam.list_role_policies(RoleName=name)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        arn = attached["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        docs.append(_doc(iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]))
    return RoleView(arn=role["Arn"], role_id=role["RoleId"], trust=_doc(role["AssumeRolePolicyDocument"]),
                    policies=docs, read_at=(started + time.time()) / 2)
