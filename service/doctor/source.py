"""`keyturn doctor`, the source side: who may come into a role, and whether their own policies let them.

For trust_policy roles, each principal's identity policies (and permissions boundary) must allow
sts:AssumeRole on the role; for group_membership roles the group must; for group_membership and
inline_policy roles the role's trust policy must let the principals' accounts in (Keyturn does not write it).
"""

from __future__ import annotations

from typing import Any

from service.aws.errors import is_not_found
from service.catalog.model import Role, Strategy
from service.core.targets import Principal, TargetError, parse_principal
from service.doctor.checks import (
    ASSUME,
    CheckResult,
    Env,
    Status,
    Verdict,
    action_of,
    assume_snippet,
    boundary_document,
    evaluate,
    identity_policies,
    is_denied,
    lookup_principal,
    owner_policies,
    trust_snippet,
    trusts,
)
from service.doctor.identities import resolved_sign_in_roles


def users_by_account(env: Env) -> dict[str, list[Principal]]:
    out: dict[str, list[Principal]] = {}
    for user in env.users():
        out.setdefault(user.account, []).append(user)
    return out


def check_principal_kinds(env: Env, role: Role) -> list[CheckResult]:
    """group_membership and inline_policy serve IAM users only."""
    if role.strategy is Strategy.TRUST_POLICY:
        return []
    roles = [i.label for _, i in sorted(env.catalog.identities.items()) if not i.is_user]
    if not env.users():
        return [CheckResult(role.id, "principal-kind", Status.WARN,
                            f"no IAM user among the principals: nobody can be given {role.id} ({role.strategy.value} "
                            "needs IAM users)", "map Slack users to IAM user ARNs in principals")]
    if roles:
        return [CheckResult(role.id, "principal-kind", Status.WARN,
                            f"{', '.join(roles)} cannot be given {role.id}: {role.strategy.value} needs IAM users",
                            "use strategy trust_policy (or identity_center) for people who sign in through a role")]
    return []


def check_trust_source(env: Env, role: Role, trust: dict[str, Any]) -> list[CheckResult]:
    """group_membership / inline_policy: the role must trust the people's accounts (Keyturn does not write it)."""
    if role.strategy is Strategy.TRUST_POLICY:
        return []  # Keyturn writes the trust statements itself
    users = env.users()
    if not users:
        return []
    shut_out = [u for u in users if not trusts(trust, u)]
    if not shut_out:
        accounts = sorted({u.account for u in users})
        return [CheckResult(role.id, "trust-source", Status.OK,
                            f"the trust policy lets in the principals' account(s) {', '.join(accounts)}")]
    accounts = sorted({u.account for u in shut_out})
    return [CheckResult(role.id, "trust-source", Status.FAIL,
                        "the trust policy does not let in " + ", ".join(u.arn for u in shut_out),
                        "add to the role's trust policy: " + " ".join(trust_snippet(a) for a in accounts))]


def check_source_assume(env: Env, role: Role) -> list[CheckResult]:
    if role.strategy is Strategy.TRUST_POLICY:
        # IAM users, and the roles role-based people sign in with (their identity policies decide too)
        sources = [*env.principals(), *resolved_sign_in_roles(env)]
        return [row for arn in sources for row in _principal_may_assume(env, role, arn)]
    if role.strategy is Strategy.GROUP_MEMBERSHIP and role.group:
        return [_group_may_assume(env, role, account) for account in sorted(users_by_account(env))]
    return []  # inline_policy: Keyturn writes the allow itself


def _principal_may_assume(env: Env, role: Role, arn: str) -> list[CheckResult]:
    try:
        principal = parse_principal(arn)
    except TargetError:
        return []  # principal-exists reports it
    subject = f"{principal.kind} {arn}"
    if principal.account == role.account:
        return [CheckResult(role.id, "source-assume", Status.OK,
                            f"{subject}: same account as the role, the trust policy alone lets it in")]
    if not env.managed(principal.account):
        return [CheckResult(role.id, "source-assume", Status.WARN,
                            f"{subject}: account {principal.account} not managed, cannot check",
                            f"make sure it may call sts:AssumeRole on {role.arn}: {assume_snippet(role.arn)}")]
    iam = env.iam(principal.account)
    try:
        if lookup_principal(env, principal) is None:
            return []  # principal-exists reports it
        policies = identity_policies(env, iam, principal)
        boundary = boundary_document(env, iam, principal)
    except Exception as exc:
        if not is_denied(exc):
            raise
        return [CheckResult(role.id, "source-assume", Status.WARN,
                            f"{subject}: cannot read its policies ({action_of(exc)} denied)",
                            f"allow Keyturn to read IAM in account {principal.account}, or check by hand")]
    variables = {"aws:username": principal.name} if principal.kind == "user" else {}
    where = f"{principal.kind} {principal.name} (or one of its groups)" if principal.kind == "user" \
        else f"role {principal.name}"
    return [judge(role, subject, evaluate(policies, ASSUME, role.arn, variables),
                  evaluate([boundary], ASSUME, role.arn, variables) if boundary else None, where)]


def _group_may_assume(env: Env, role: Role, account: str) -> CheckResult:
    group = str(role.group)
    subject = f"group {group} in {account}"
    if not env.managed(account):
        return CheckResult(role.id, "source-assume", Status.WARN, f"{subject}: account not managed, cannot check",
                           f"give the group a policy allowing sts:AssumeRole: {assume_snippet(role.arn)}")
    try:
        policies = owner_policies(env, env.iam(account), "group", group)
    except Exception as exc:
        if is_not_found(exc):
            return CheckResult(role.id, "source-assume", Status.FAIL, f"{subject}: the group does not exist",
                               "see group-exists")
        if not is_denied(exc):
            raise
        return CheckResult(role.id, "source-assume", Status.WARN,
                           f"{subject}: cannot read its policies ({action_of(exc)} denied)", "check by hand")
    return judge(role, subject, evaluate(policies, ASSUME, role.arn), None, f"group {group} in account {account}")


def judge(role: Role, subject: str, verdict: Verdict, boundary: Verdict | None, attach_to: str) -> CheckResult:
    """What an identity-policy verdict means for sts:AssumeRole on the role."""
    if verdict.denied_by:
        return CheckResult(role.id, "source-assume", Status.FAIL,
                           f"{subject}: sts:AssumeRole on {role.arn} is explicitly denied by "
                           + ", ".join(verdict.denied_by), "remove or narrow that Deny")
    if not verdict.allowed_by:
        return CheckResult(role.id, "source-assume", Status.FAIL,
                           f"{subject}: no policy allows sts:AssumeRole on {role.arn}",
                           f"attach to {attach_to}: {assume_snippet(role.arn)}")
    if boundary is not None and (boundary.denied_by or not boundary.allowed_by):
        return CheckResult(role.id, "source-assume", Status.FAIL,
                           f"{subject}: allowed by {', '.join(verdict.allowed_by)}, but its permissions boundary "
                           f"does not allow sts:AssumeRole on {role.arn}",
                           f"add to the boundary policy: {assume_snippet(role.arn)}")
    detail = f"{subject}: allowed by {', '.join(verdict.allowed_by)}"
    if verdict.conditional_allow:
        detail += " (under conditions, not evaluated here)"
    maybe = verdict.maybe_denied_by + (boundary.maybe_denied_by if boundary else ())
    if maybe:
        return CheckResult(role.id, "source-assume", Status.WARN,
                           f"{detail}; a Deny with conditions in {', '.join(maybe)} may still apply",
                           "check that Deny's conditions by hand")
    return CheckResult(role.id, "source-assume", Status.OK, detail)
