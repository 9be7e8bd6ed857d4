"""What a benchmark sends and reads: signed Slack requests to gunicorn and IAM as it is now (read from moto
directly, not through the proxy, so reads the benchmark makes are not counted). Mixed into `bench.env.Stack`."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from bench.catalogue import APPROVERS, APPROVERS_CHANNEL, GROUP_NAME, SIGNING_SECRET
from tests.support.slack_signing import sign


class StackClients:
    """Needs `events_url`, `response_url()` and `iam` from the class it is mixed into."""

    @property
    def events_url(self) -> str:
        raise NotImplementedError

    @property
    def iam(self) -> Any:
        raise NotImplementedError

    def response_url(self, key: str = "bench") -> str:
        raise NotImplementedError

    # ---- Slack requests ----------------------------------------------------------------------------
    def signed_headers(self, body: str, ts: int | None = None) -> dict[str, str]:
        stamp = str(ts if ts is not None else int(time.time()))
        return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": sign(SIGNING_SECRET, stamp, body)}

    def post(self, body: str, session: requests.Session | None = None, timeout: float = 30) -> requests.Response:
        http = session or requests
        return http.post(self.events_url, data=body.encode(), headers=self.signed_headers(body), timeout=timeout)

    def command_body(self, user: str, text: str) -> str:
        from tests.support.slack_signing import slash_command_body

        return slash_command_body(text=text, user_id=user, channel_id="C0BENCH01",
                                  response_url=self.response_url("command"))

    def approve_body(self, request_id: int, approver: str = APPROVERS[0]) -> str:
        from tests.support.slack_signing import block_actions_body

        return block_actions_body(approver, action_id="approve_request", value=str(request_id),
                                  channel_id=APPROVERS_CHANNEL, response_url=self.response_url("approve"))

    # ---- IAM as it is now (read from moto directly) ------------------------------------------------
    def owned_principals(self, name: str) -> set[str]:
        from service.core.policy import split

        doc = self.iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        if isinstance(doc, str):
            from urllib.parse import unquote

            doc = json.loads(unquote(doc))
        return {str((s.get("Principal") or {}).get("AWS")) for s in split(doc)[1]}

    def group_members(self) -> set[str]:
        members: set[str] = set()
        for page in self.iam.get_paginator("get_group").paginate(GroupName=GROUP_NAME):
            members.update(u["UserName"] for u in page["Users"])
        return members
