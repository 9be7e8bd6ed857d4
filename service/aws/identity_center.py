"""IAM Identity Center account assignments: who holds one permission set in one account.

`CreateAccountAssignment` and `DeleteAccountAssignment` are asynchronous: AWS answers with a request id and
a status, and the assignment exists (or is gone) only once the status says SUCCEEDED. Every write here
polls the status API until it does, raises on FAILED with AWS's reason, and gives up after a bounded wait.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from service.aws.errors import SyncConflict, TargetGone, error_code
from service.catalog.model import IdentityCenter

USER = "USER"
NOT_FOUND = "ResourceNotFoundException"

# Permission set name -> ARN, per (instance, name): the ARN never changes while the set exists.
_ARNS: dict[tuple[str, str], str] = {}
_ARNS_LOCK = threading.Lock()


class UserNotFound(Exception):
    """No Identity Center user has this user name: nothing can be assigned to them."""


class AssignmentFailed(Exception):
    """AWS reported FAILED for a create or delete request (the reason is AWS's FailureReason)."""


@dataclass(frozen=True, order=True)
class Assignment:
    principal_type: str  # USER or GROUP
    principal_id: str  # the identity-store id

    @property
    def key(self) -> str:
        return f"{self.principal_type}:{self.principal_id}"


def _is(exc: BaseException, code: str) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) == code


class AccountAssignments:
    """The assignments of permission set `permission_set` (by name) in `account`."""

    def __init__(self, sso: Any, store: Any, center: IdentityCenter, *, account: str, permission_set: str,
                 poll_interval: float = 0.5, max_wait: float = 120.0):
        self.sso, self.store, self.center = sso, store, center
        self.account, self.permission_set = account, permission_set
        self.poll_interval, self.max_wait = poll_interval, max_wait

    @property
    def label(self) -> str:
        return f"permission set {self.permission_set} in account {self.account}"

    # ---- resolving names ------------------------------------------------------------------------------
    def permission_set_arn(self, *, fresh: bool = False) -> str:
        key = (self.center.instance_arn, self.permission_set)
        with _ARNS_LOCK:
            if not fresh and key in _ARNS:
                return _ARNS[key]
        found = None
        pages = self.sso.get_paginator("list_permission_sets").paginate(InstanceArn=self.center.instance_arn)
        for arn in (a for page in pages for a in page.get("PermissionSets", [])):
            described = self.sso.describe_permission_set(InstanceArn=self.center.instance_arn,
                                                         PermissionSetArn=arn)["PermissionSet"]
            if described.get("Name") == self.permission_set:
                found = arn
                break
        if found is None:
            raise TargetGone(f"{self.label}: no permission set named {self.permission_set} in "
                             f"{self.center.instance_arn}")
        with _ARNS_LOCK:
            _ARNS[key] = found
        return found

    def user_id(self, user_name: str) -> str:
        """The identity-store user id of the Identity Center user `user_name` (raises UserNotFound)."""
        try:
            answer = self.store.get_user_id(
                IdentityStoreId=self.center.identity_store_id,
                AlternateIdentifier={"UniqueAttribute": {"AttributePath": "userName", "AttributeValue": user_name}},
            )
        except ClientError as exc:
            if _is(exc, NOT_FOUND):
                raise UserNotFound(f"no IAM Identity Center user named {user_name} in identity store "
                                   f"{self.center.identity_store_id}") from exc
            raise
        return str(answer["UserId"])

    # ---- reading and writing ----------------------------------------------------------------------------
    def read(self) -> set[Assignment]:
        try:
            return self._list(self.permission_set_arn())
        except ClientError as exc:
            if not _is(exc, NOT_FOUND):
                raise
        # The set may have been deleted and re-created under the same name (a new ARN): look again.
        return self._list(self.permission_set_arn(fresh=True))

    def _list(self, ps_arn: str) -> set[Assignment]:
        pages = self.sso.get_paginator("list_account_assignments").paginate(
            InstanceArn=self.center.instance_arn, AccountId=self.account, PermissionSetArn=ps_arn)
        return {Assignment(a["PrincipalType"], a["PrincipalId"])
                for page in pages for a in page.get("AccountAssignments", [])}

    def _params(self, user_id: str) -> dict[str, str]:
        return {"InstanceArn": self.center.instance_arn, "TargetId": self.account, "TargetType": "AWS_ACCOUNT",
                "PermissionSetArn": self.permission_set_arn(), "PrincipalType": USER, "PrincipalId": user_id}

    def create(self, user_id: str) -> None:
        status = self.sso.create_account_assignment(**self._params(user_id))["AccountAssignmentCreationStatus"]
        self._wait(status, "creation", lambda rid: self.sso.describe_account_assignment_creation_status(
            InstanceArn=self.center.instance_arn, AccountAssignmentCreationRequestId=rid,
        )["AccountAssignmentCreationStatus"])

    def delete(self, user_id: str) -> None:
        try:
            status = self.sso.delete_account_assignment(**self._params(user_id))["AccountAssignmentDeletionStatus"]
        except ClientError as exc:
            if _is(exc, NOT_FOUND):
                return  # already gone counts as done
            raise
        self._wait(status, "deletion", lambda rid: self.sso.describe_account_assignment_deletion_status(
            InstanceArn=self.center.instance_arn, AccountAssignmentDeletionRequestId=rid,
        )["AccountAssignmentDeletionStatus"])

    def _wait(self, status: dict[str, Any], what: str, describe: Any) -> None:
        """Poll the request's status to SUCCEEDED: always confirmed by the status API at least once."""
        request_id = status["RequestId"]
        deadline = time.monotonic() + self.max_wait
        delay = self.poll_interval
        while True:
            status = describe(request_id)
            state = status.get("Status")
            if state == "SUCCEEDED":
                return
            if state == "FAILED":
                raise AssignmentFailed(f"{self.label}: assignment {what} failed: "
                                       f"{status.get('FailureReason') or 'no reason given'}")
            if time.monotonic() + delay > deadline:
                # Transient: the next sync reads the assignments again and carries on from what it finds.
                raise SyncConflict(f"{self.label}: assignment {what} {request_id} still {state} after "
                                   f"{self.max_wait:.0f}s")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
