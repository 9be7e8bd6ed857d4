"""`keyturn doctor`: every catalogue role checked against AWS for what the Switch Role guides say breaks.

`run_doctor(catalog, clients)` returns one `CheckResult` per (role, check); any FAIL means someone will
not get in (or Keyturn cannot do its job). Clients are passed in; nothing talks to AWS at import.

Verified for real: the role (by name, then its ARN's account and path), its trust policy, its
MaxSessionDuration, the principals, Keyturn's read access (the very calls it makes), and the source
side's identity policies (read and matched here). Keyturn's write access is asked of
iam:SimulatePrincipalPolicy; where that is unavailable, a trust_policy role's permission is proved by
rewriting its unchanged trust policy, and other strategies are reported as not verifiable (WARN).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from service.aws.documents import INLINE_POLICY_NAME, SESSIONS_POLICY_NAME
from service.aws.errors import is_not_found
from service.catalog.model import Catalog, Role, Strategy
from service.core.durations import format_duration
from service.core.targets import TargetKind, TargetRef
from service.doctor.checks import (
    ACCOUNTS,
    PRINCIPALS,
    SWITCH_ROLE_MAX,
    CheckResult,
    Clients,
    Env,
    Named,
    Status,
    action_of,
    as_document,
    assume_snippet,
    caller_arn,
    check_accounts,
    check_principals,
    describe,
    evaluate,
    is_denied,
    paginate,
    statements,
)
from service.doctor.identities import (
    IDENTITIES,
    check_identities,
    check_permission_set,
    check_trust_broad,
    check_trust_keyturn,
)
from service.doctor.source import (
    check_principal_kinds,
    check_source_assume,
    check_trust_source,
    users_by_account,
)

__all__ = ["ACCOUNTS", "IDENTITIES", "PRINCIPALS", "CheckResult", "Named", "Status", "evaluate", "exit_code",
           "render_json", "render_table", "run_doctor"]

IAM_MIN_SESSION = timedelta(hours=1)  # MaxSessionDuration cannot be set lower
CONFIG_HINT = "grant it to Keyturn's role or the account's manager role (the policy in config/iam)"


def run_doctor(catalog: Catalog, clients: Clients, *, write_probe: bool = True, locks: Any = None,
               console_url: str = "") -> list[CheckResult]:
    """Accounts, principals, then every role (sorted by id). `console_url`: KEYTURN_CONSOLE_URL (security keys)."""
    env = Env(catalog, clients, write_probe=write_probe, locks=locks)
    out = _safe(ACCOUNTS, "account-access", lambda: check_accounts(env))
    out += _safe(PRINCIPALS, "principal-exists", lambda: check_principals(env))
    out += _safe(IDENTITIES, "sign-in-role", lambda: check_identities(env))
    for role in sorted(catalog.roles.values(), key=lambda r: r.id):
        out += check_security_key_console(role, console_url)
        out += check_role(env, role)
    return out


def check_security_key_console(role: Role, console_url: str) -> list[CheckResult]:
    """A role whose approvals need a security key can only be approved on the console's confirm page."""
    needs = role.require_security_key or role.break_glass_requires_security_key
    if not needs:
        return []
    what = "approvals" if role.require_security_key else "break-glass approvals"
    if not console_url:
        return [CheckResult(role.id, "security-key-console", Status.FAIL,
                            f"its {what} need a security key, but the console is off (KEYTURN_CONSOLE_URL unset): "
                            "nobody can approve them", "set KEYTURN_CONSOLE_URL (README, The web console), or drop "
                            "the catalogue's security-key flag")]
    return [CheckResult(role.id, "security-key-console", Status.OK,
                        f"{what} confirmed with a security key on {console_url}")]


def exit_code(results: Iterable[CheckResult]) -> int:
    return 1 if any(r.status is Status.FAIL for r in results) else 0


def _safe(role_id: str, check: str, fn: Callable[[], list[CheckResult]]) -> list[CheckResult]:
    """A check that blows up (network, credentials, an AWS answer we did not expect) is a FAIL row."""
    try:
        return fn()
    except Exception as exc:
        return [CheckResult(role_id, check, Status.FAIL, f"the check could not run: {describe(exc)}",
                            "fix the error above and run keyturn doctor again")]


# ---- the role itself -----------------------------------------------------------------------------
def check_role(env: Env, role: Role) -> list[CheckResult]:
    if role.strategy is Strategy.IDENTITY_CENTER:
        # No target role of Keyturn's: the permission set's own role is made and trusted by Identity Center.
        return _safe(role.id, "permission-set", lambda: check_permission_set(env, role))
    out = [check_switch_role_name(role)]
    found: list[dict[str, Any]] = []

    def find() -> list[CheckResult]:
        live, rows = find_role(env, role)
        found.extend([live] if live else [])
        return rows

    out += _safe(role.id, "role-exists", find)
    if not found:
        return out  # nothing else about this role can be checked
    live = found[0]
    trust = as_document(live["AssumeRolePolicyDocument"])
    out += _safe(role.id, "external-id", lambda: [check_external_id(role, trust)])
    out += _safe(role.id, "session-duration", lambda: [check_session_duration(role, live)])
    group_arns: dict[str, str] = {}
    out += _safe(role.id, "manager-read", lambda: check_manager_read(env, role, group_arns))
    out += _safe(role.id, "manager-write", lambda: [check_manager_write(env, role, group_arns)])
    out += _safe(role.id, "principal-kind", lambda: check_principal_kinds(env, role))
    out += _safe(role.id, "trust-source", lambda: check_trust_source(env, role, trust))
    out += _safe(role.id, "trust-broad", lambda: check_trust_broad(env, role, trust))
    out += _safe(role.id, "trust-keyturn", lambda: check_trust_keyturn(env, role, trust))
    out += _safe(role.id, "source-assume", lambda: check_source_assume(env, role))
    return out


def check_switch_role_name(role: Role) -> CheckResult:
    full = role.path_and_name
    if len(full) > SWITCH_ROLE_MAX:
        return CheckResult(role.id, "switch-role-name", Status.FAIL,
                           f"{full!r} is {len(full)} characters; the console's Switch Role form takes at most "
                           f"{SWITCH_ROLE_MAX} (path without the leading / plus name)",
                           "shorten the role's path or name")
    return CheckResult(role.id, "switch-role-name", Status.OK, f"{full!r} ({len(full)}/{SWITCH_ROLE_MAX} characters)")


def find_role(env: Env, role: Role) -> tuple[dict[str, Any] | None, list[CheckResult]]:
    """The live role when it is the one the catalogue means: that name, in that account, under that path."""
    try:
        live: dict[str, Any] = dict(env.iam(role.account).get_role(RoleName=role.role_name)["Role"])
    except Exception as exc:
        if is_not_found(exc):
            return None, [CheckResult(role.id, "role-exists", Status.FAIL,
                                      f"no role {role.role_name} in account {role.account} ({role.arn}); "
                                      "the role's other checks were skipped",
                                      f"create the role under path {role.path}, or correct role_name / account")]
        if is_denied(exc):
            return None, [CheckResult(role.id, "manager-read", Status.FAIL,
                                      f"cannot read the role: {action_of(exc)} denied on {role.arn}",
                                      f"allow iam:GetRole on {role.arn}: {CONFIG_HINT}")]
        raise
    arn = str(live.get("Arn", ""))
    if arn == role.arn:
        return live, [CheckResult(role.id, "role-exists", Status.OK, f"{arn} exists")]
    account = arn.split(":")[4] if arn.count(":") >= 5 else "?"
    if account != role.account:
        detail = (f"the role reached is {arn}, in account {account}, not {role.account}: the credentials used "
                  f"for {role.account} land in another account")
        fix = f"set accounts[].manager_role_arn for {role.account} (or correct the role's account)"
    else:
        detail = (f"IAM has {arn} (path {live.get('Path')}), the catalogue says {role.arn}: the Switch Role link and "
                  "the policies Keyturn writes would name a role that does not exist")
        fix = f"set path: {live.get('Path')} in the catalogue, or recreate the role under {role.path}"
    return None, [CheckResult(role.id, "role-arn", Status.FAIL, detail + "; the role's other checks were skipped",
                              fix)]


def check_external_id(role: Role, trust: dict[str, Any]) -> CheckResult:
    needing = []
    for i, stmt in enumerate(statements(trust), start=1):
        condition = stmt.get("Condition") or {}
        if isinstance(condition, dict) and any(
            isinstance(keys, dict) and any(str(k).lower() == "sts:externalid" for k in keys)
            for keys in condition.values()
        ):
            needing.append(str(stmt.get("Sid") or f"#{i}"))
    if needing:
        return CheckResult(role.id, "external-id", Status.FAIL,
                           f"trust policy statement(s) {', '.join(needing)} require sts:ExternalId: the console's "
                           "Switch Role cannot pass one, so nobody gets in that way",
                           "remove the sts:ExternalId condition (keep external ids for third-party access roles)")
    return CheckResult(role.id, "external-id", Status.OK, "the trust policy does not require sts:ExternalId")


def check_session_duration(role: Role, live: dict[str, Any]) -> CheckResult:
    session = timedelta(seconds=int(live.get("MaxSessionDuration") or 3600))
    longest = role.max_duration
    said = f"MaxSessionDuration {format_duration(session)}, longest grant {format_duration(longest)}"
    if session > max(longest, IAM_MIN_SESSION):
        target = int(max(longest, IAM_MIN_SESSION).total_seconds())
        return CheckResult(role.id, "session-duration", Status.WARN,
                           f"{said}: a session taken during a grant can outlive it; Keyturn's session deny "
                           f"({SESSIONS_POLICY_NAME} on the role) cuts such sessions when the grant ends",
                           f"aws iam update-role --role-name {role.role_name} --max-session-duration {target}")
    if session > longest:
        return CheckResult(role.id, "session-duration", Status.OK,
                           f"{said}: IAM's minimum; Keyturn's session deny cuts what outlives a grant")
    return CheckResult(role.id, "session-duration", Status.OK, said)


# ---- Keyturn's own access ------------------------------------------------------------------------
def check_manager_read(env: Env, role: Role, group_arns: dict[str, str]) -> list[CheckResult]:
    """Make the reads sync makes; a missing entity still proves the permission (IAM authorizes first)."""
    denied: list[str] = []
    rows: list[CheckResult] = []
    made: set[str] = {"iam:GetRole"}

    def attempt(action: str, what: str, method: Callable[..., Any], **params: Any) -> Any:
        """The answer; None when the entity is missing; False when access is denied."""
        made.add(action)
        try:
            return method(**params)
        except Exception as exc:
            if is_not_found(exc):
                return None
            if is_denied(exc):
                denied.append(f"{action} ({what})")
                return False
            raise

    iam = env.iam(role.account)
    attempt("iam:GetRolePolicy", f"role {role.role_name}",
            iam.get_role_policy, RoleName=role.role_name, PolicyName=SESSIONS_POLICY_NAME)
    unmanaged = []
    if role.strategy is not Strategy.TRUST_POLICY:
        for account, users in sorted(users_by_account(env).items()):
            if not env.managed(account):
                unmanaged.append(account)
                continue
            acc = env.iam(account)
            if role.group:
                group = attempt("iam:GetGroup", f"group {role.group} in {account}",
                                acc.get_group, GroupName=role.group, MaxItems=1)
                rows.append(_group_row(role, account, group))
                if group:
                    group_arns[account] = group["Group"]["Arn"]
                    if role.strategy is Strategy.INLINE_POLICY:
                        attempt("iam:ListGroupPolicies", f"group {role.group} in {account}",
                                acc.list_group_policies, GroupName=role.group)
            for user in users:
                what = f"user {user.name} in {account}"
                if role.strategy is Strategy.GROUP_MEMBERSHIP:
                    attempt("iam:ListGroupsForUser", what, acc.list_groups_for_user, UserName=user.name)
                elif not role.group:
                    attempt("iam:ListUserPolicies", what, acc.list_user_policies, UserName=user.name)
                    attempt("iam:GetUserPolicy", what, acc.get_user_policy, UserName=user.name,
                            PolicyName=INLINE_POLICY_NAME)
    if denied:
        rows.insert(0, CheckResult(role.id, "manager-read", Status.FAIL, "Keyturn may not read: " + "; ".join(denied),
                                   f"allow those actions: {CONFIG_HINT}"))
    else:
        note = f"; accounts not managed, not checked: {', '.join(unmanaged)}" if unmanaged else ""
        rows.insert(0, CheckResult(role.id, "manager-read", Status.OK, "read with " + ", ".join(sorted(made)) + note))
    return rows


def _group_row(role: Role, account: str, group: Any) -> CheckResult:
    if group is None:
        fix = f"aws iam create-group --group-name {role.group} (in account {account})"
        if role.strategy is Strategy.GROUP_MEMBERSHIP:
            fix += f", then give it a policy allowing sts:AssumeRole: {assume_snippet(role.arn)}"
        return CheckResult(role.id, "group-exists", Status.FAIL,
                           f"group {role.group} does not exist in account {account}", fix)
    if group is False:
        return CheckResult(role.id, "group-exists", Status.WARN,
                           f"group {role.group} in account {account}: cannot read it (see manager-read)")
    return CheckResult(role.id, "group-exists", Status.OK, f"{group['Group']['Arn']} exists")


def write_plan(env: Env, role: Role, group_arns: dict[str, str]) -> dict[str, list[tuple[str, list[str]]]]:
    """account -> [(resource ARN, the IAM actions sync needs on it)]."""
    role_actions = ["iam:PutRolePolicy", "iam:DeleteRolePolicy"]  # the session deny, for every strategy
    if role.strategy is Strategy.TRUST_POLICY:
        role_actions.insert(0, "iam:UpdateAssumeRolePolicy")
    plan: dict[str, list[tuple[str, list[str]]]] = {role.account: [(role.arn, role_actions)]}
    if role.strategy is Strategy.GROUP_MEMBERSHIP:
        for account, arn in sorted(group_arns.items()):
            plan.setdefault(account, []).append((arn, ["iam:AddUserToGroup", "iam:RemoveUserFromGroup"]))
    elif role.strategy is Strategy.INLINE_POLICY and role.group:
        for account, arn in sorted(group_arns.items()):
            plan.setdefault(account, []).append((arn, ["iam:PutGroupPolicy", "iam:DeleteGroupPolicy"]))
    elif role.strategy is Strategy.INLINE_POLICY:
        for user in env.users():
            if env.managed(user.account):
                plan.setdefault(user.account, []).append((user.arn, ["iam:PutUserPolicy", "iam:DeleteUserPolicy"]))
    return plan


def simulate(env: Env, account: str, actions: list[str], resource: str) -> list[str] | None:
    """The actions simulate_principal_policy says Keyturn may not take on `resource`; None if unavailable."""
    source = None if account in env.no_simulate else caller_arn(env, account)
    if source is None:
        return None
    try:
        denied = []
        for result in paginate(env.iam(account), "simulate_principal_policy", "EvaluationResults",
                               PolicySourceArn=source, ActionNames=actions, ResourceArns=[resource]):
            decisions = [result.get("EvalDecision")]
            decisions += [r.get("EvalResourceDecision") for r in result.get("ResourceSpecificResults") or []]
            if any(d != "allowed" for d in decisions):
                denied.append(str(result.get("EvalActionName")))
        return denied
    except Exception:
        env.no_simulate.add(account)  # not implemented (moto), not allowed, or not answering: do not ask again
        return None


def check_manager_write(env: Env, role: Role, group_arns: dict[str, str]) -> CheckResult:
    denied: list[str] = []
    unverified: list[tuple[str, list[str]]] = []
    checked = 0
    for account, items in write_plan(env, role, group_arns).items():
        for resource, actions in items:
            result = simulate(env, account, actions, resource)
            if result is None:
                unverified.append((resource, actions))
            else:
                checked += len(actions)
                denied += [f"{action} on {resource}" for action in result]
    if denied:
        return CheckResult(role.id, "manager-write", Status.FAIL, "Keyturn may not: " + "; ".join(denied),
                           f"allow those actions: {CONFIG_HINT}")
    if not unverified:
        return CheckResult(role.id, "manager-write", Status.OK,
                           f"simulate_principal_policy allows all {checked} write actions sync needs")
    needed = "; ".join(f"{', '.join(actions)} on {resource}" for resource, actions in unverified)
    if role.strategy is Strategy.TRUST_POLICY:
        if not env.write_probe:
            return CheckResult(role.id, "manager-write", Status.WARN,
                               f"not verified (simulate_principal_policy unavailable, write probe off): needs {needed}")
        return probe_trust_write(env, role)
    return CheckResult(role.id, "manager-write", Status.WARN,
                       f"write permission not verifiable here (simulate_principal_policy unavailable): needs {needed}",
                       "let Keyturn call iam:SimulatePrincipalPolicy on itself to have this checked")


def probe_trust_write(env: Env, role: Role) -> CheckResult:
    """Rewrite the role's trust policy unchanged: a write that proves iam:UpdateAssumeRolePolicy.

    With `env.locks` (the CLI passes sync's Redis locks when Redis answers) the read and the write hold
    the role's sync lock, so they can never undo a concurrent sync. Without it the two calls are back to
    back and a sync in between would be undone until its read-back or the next reconcile repairs it.
    `write_probe=False` (`keyturn doctor --no-write-probe`) never writes.
    """
    iam = env.iam(role.account)
    key = TargetRef(TargetKind.TRUST_POLICY, role.account, role.role_name).key
    try:
        with env.locks.hold(key) if env.locks is not None else nullcontext():
            current = as_document(iam.get_role(RoleName=role.role_name)["Role"]["AssumeRolePolicyDocument"])
            iam.update_assume_role_policy(RoleName=role.role_name, PolicyDocument=json.dumps(current))
    except Exception as exc:
        if is_denied(exc):
            return CheckResult(role.id, "manager-write", Status.FAIL,
                               f"{action_of(exc)} denied on {role.arn}: Keyturn cannot grant or revoke this role",
                               f"allow iam:UpdateAssumeRolePolicy on {role.arn}: {CONFIG_HINT}")
        raise
    return CheckResult(role.id, "manager-write", Status.OK,
                       "simulate_principal_policy unavailable; iam:UpdateAssumeRolePolicy proved by rewriting the "
                       "unchanged trust policy (iam:PutRolePolicy / iam:DeleteRolePolicy for the session deny not "
                       "verifiable here)")


# ---- output --------------------------------------------------------------------------------------
def summary(results: list[CheckResult]) -> dict[str, int]:
    return {s.value: sum(1 for r in results if r.status is s) for s in Status}


def render_table(results: list[CheckResult]) -> str:
    role_w = max([4, *(len(r.role_id) for r in results)])
    check_w = max([5, *(len(r.check) for r in results)])
    indent = " " * (role_w + check_w + 12)
    lines = [f"{'ROLE':<{role_w}}  {'CHECK':<{check_w}}  STATUS  DETAIL / HOW TO FIX"]
    for r in results:
        lines.append(f"{r.role_id:<{role_w}}  {r.check:<{check_w}}  {r.status.value:<6}  {r.detail}")
        if r.fix and r.status is not Status.OK:
            lines.append(f"{indent}fix: {r.fix}")
    counts = summary(results)
    lines.append(f"{len(results)} checks: {counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL")
    return "\n".join(lines)


def render_json(results: list[CheckResult]) -> str:
    rows = [{**asdict(r), "status": r.status.value} for r in results]
    return json.dumps({"ok": exit_code(results) == 0, "summary": summary(results), "results": rows}, indent=2)

