"""A proxy in front of moto that refuses a trust policy naming a principal that does not exist, as IAM does.

IAM resolves every `"AWS"` principal of a trust policy when it is written and refuses the whole document
if one does not exist:

    HTTP 400  <Code>MalformedPolicyDocument</Code>
              <Message>Invalid principal in policy: "AWS":"arn:aws:iam::111111111111:user/ghost"</Message>

moto accepts any principal. `StrictIamProxy` is the `FaultProxy` (every fault it offers still works) with
that check on `UpdateAssumeRolePolicy` and `CreateRole`: each user or role ARN is looked up in moto
directly (GetUser / GetRole, not through the proxy). moto answers for one account (the caller's); an ARN
in any other account does not exist there, so it is refused. Account roots, bare account ids, unique ids,
`*`, `sts:` session ARNs and non-`AWS` principals (Service, Federated) are not checked, as in IAM.
Everything else passes through.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config

from tests.support.fault_proxy import FaultProxy, Seen

CHECKED = {"UpdateAssumeRolePolicy": "PolicyDocument", "CreateRole": "AssumeRolePolicyDocument"}
DIRECT = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=20)


def aws_principals(document: dict[str, Any]) -> Iterator[str]:
    """Every `"AWS"` principal of a policy document, in order."""
    statements = document.get("Statement") or []
    for s in [statements] if isinstance(statements, dict) else statements:
        principal = s.get("Principal") if isinstance(s, dict) else None
        values = principal.get("AWS") if isinstance(principal, dict) else None
        yield from [values] if isinstance(values, str) else (values or [])


class StrictIamProxy(FaultProxy):
    def __init__(self, upstream: str, name_principal: bool = True) -> None:
        """`name_principal=False` answers without the ARN ("Invalid principal in policy"), so a caller
        has to find the refused statement by itself."""
        super().__init__(upstream)
        self.name_principal = name_principal
        self._iam = boto3.client("iam", endpoint_url=upstream, config=DIRECT)
        self._account: str | None = None
        self._refused: list[str] = []
        self._refused_lock = threading.Lock()

    @property
    def refused(self) -> list[str]:
        """The principal ARNs refused so far, in order."""
        with self._refused_lock:
            return list(self._refused)

    def _moto_account(self) -> str:
        if self._account is None:
            sts = boto3.client("sts", endpoint_url=self._iam.meta.endpoint_url, config=DIRECT)
            self._account = str(sts.get_caller_identity()["Account"])
        return self._account

    def exists(self, arn: str) -> bool:
        """Whether IAM would accept `arn` as a principal (it names an existing user or role, or is not
        something IAM resolves)."""
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "iam":
            return True  # "*", an account id, a unique id, an sts: session ARN: not resolved here
        account, resource = parts[4], parts[5]
        kind, _, rest = resource.partition("/")
        if kind not in ("user", "role"):
            return True  # :root and the like
        if account != self._moto_account():
            return False
        name = rest.rsplit("/", 1)[-1]
        try:
            if kind == "user":
                found = self._iam.get_user(UserName=name)["User"]["Arn"]
            else:
                found = self._iam.get_role(RoleName=name)["Role"]["Arn"]
        except self._iam.exceptions.NoSuchEntityException:
            return False
        return str(found) == arn

    def first_invalid(self, document: dict[str, Any]) -> str | None:
        return next((arn for arn in aws_principals(document) if not self.exists(arn)), None)

    def _forward(self, req: BaseHTTPRequestHandler, raw: bytes, drop: bool = False, hold: float = 0.0,
                 seen: Seen | None = None) -> None:
        params = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
        action = (params.get("Action") or [""])[0]
        field = CHECKED.get(action)
        if field and params.get(field):
            try:
                document = json.loads(params[field][0])
            except ValueError:
                document = None
            bad = self.first_invalid(document) if isinstance(document, dict) else None
            if bad is not None:
                with self._refused_lock:
                    self._refused.append(bad)
                named = f': "AWS":"{bad}"' if self.name_principal else ""
                message = escape(f"Invalid principal in policy{named}")
                return self._answer_error(req, (400, "Sender", "MalformedPolicyDocument", message))
        super()._forward(req, raw, drop=drop, hold=hold, seen=seen)
