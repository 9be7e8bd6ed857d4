"""The bench catalogue: 20 trust-policy roles, one group-membership role, 200 people, and their names."""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"  # moto's default account: every role and user lives here
SIGNING_SECRET = "bench-signing-secret-4b6f1e2a9d3c7e58"  # 32+ characters: the web refuses a short one
TASK_SIGNING_KEY = "bench-task-signing-key-0f7d2c9a4e1b6358"
BOT_TOKEN = "xoxb-bench"
APPROVERS = ("U0APPRV01", "U0APPRV02")
ADMIN = "U0ADMIN01"
APPROVERS_CHANNEL = "C0BENCHAP"
AUDIT_CHANNEL = "C0BENCHAU"
N_ROLES = 20
N_PRINCIPALS = 200
GROUP_ROLE = "bench-group"
GROUP_NAME = "keyturn-bench-group"
TRUST_POLICY_MAX_CHARS = 8192
TEAM_ID = "T0TEAM001"


def role_id(i: int) -> str:
    return f"bench-{i:02d}"


def role_name(i: int) -> str:
    return f"BenchRole{i:02d}"


def user_id(i: int) -> str:
    return f"U0B{i:04d}"


def user_name(i: int) -> str:
    return f"bench{i:04d}"


def principal(i: int) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/{user_name(i)}"


def catalogue() -> dict[str, Any]:
    """20 trust-policy roles (the scale test's 1,000 grants spread over them), one group-membership role,
    200 people. trust_policy_max_chars is 8192, the most the catalogue accepts (AWS's default is 2048)."""
    roles: list[dict[str, Any]] = [
        {"id": role_id(i), "name": f"Bench role {i:02d}", "account": "bench", "role_name": role_name(i),
         "path": "/keyturn/", "strategy": "trust_policy", "approvers": list(APPROVERS),
         "approvers_channel": APPROVERS_CHANNEL, "min_approvals": 1, "default_duration": "1h",
         "max_duration": "4h", "require_reason": True}
        for i in range(1, N_ROLES + 1)
    ]
    roles.append({"id": GROUP_ROLE, "name": "Bench group role", "account": "bench", "role_name": "BenchGroupRole",
                  "path": "/keyturn/", "strategy": "group_membership", "group": GROUP_NAME,
                  "approvers": list(APPROVERS), "approvers_channel": APPROVERS_CHANNEL, "max_duration": "4h",
                  "require_reason": True})
    return {
        "settings": {"admins": [ADMIN], "audit_channel": AUDIT_CHANNEL,
                     "trust_policy_max_chars": TRUST_POLICY_MAX_CHARS, "request_timeout": "24h"},
        "accounts": [{"id": ACCOUNT, "alias": "bench"}],
        "principals": {user_id(i): principal(i) for i in range(1, N_PRINCIPALS + 1)},
        "roles": roles,
    }

