"""`keyturn doctor`'s checks: each looks at one thing the AWS Switch Role guides say can break, against AWS.

Every check takes the catalogue and the IAM clients (through `Env`) and returns frozen `CheckResult`s;
nothing is built at import. IAM's own policy evaluation is approximated where AWS offers no API for it
(identity policies are read and matched here; conditions, SCPs and session policies are not evaluated).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import unquote

from service.aws.errors import error_code, is_not_found
from service.catalog.model import Catalog
from service.core.targets import Principal, TargetError, parse_principal

SWITCH_ROLE_MAX = 64  # the console's Switch Role form: path (without the leading /) + name
ASSUME = "sts:AssumeRole"
PRINCIPALS = "(principals)"  # role_id of the rows about catalogue principals
ACCOUNTS = "(accounts)"  # role_id of the rows about catalogue accounts
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                          "UnauthorizedAccess", "AuthorizationError"})


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class CheckResult:
    role_id: str
    check: str
    status: Status
    detail: str
    fix: str = ""


class Clients(Protocol):
    """What `AwsClients` offers: an IAM client acting in an account, STS, and IAM Identity Center's clients."""

    def iam(self, account: str) -> Any: ...
    def sts(self) -> Any: ...
    def sso_admin(self, region: str | None = None) -> Any: ...
    def identitystore(self, region: str | None = None) -> Any: ...


@dataclass
class Env:
    """One doctor run: the catalogue, the clients, and what has been read so far."""

    catalog: Catalog
    clients: Clients
    write_probe: bool = True
    locks: Any = None  # sync's per-target locks: the write probe then never races a sync
    principal_info: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # ARN -> user/role, None=gone
    managed_docs: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    callers: dict[str, str | None] = field(default_factory=dict)  # account -> ARN to simulate as
    no_simulate: set[str] = field(default_factory=set)  # accounts where simulate_principal_policy failed
    # sign-in role ARN -> (unique id, people): role-based people's roles as IAM has them (doctor/identities.py)
    sign_in_roles: dict[str, tuple[str, list[str]]] | None = None

    def iam(self, account: str) -> Any:
        return self.clients.iam(account)

    def managed(self, account: str) -> bool:
        return account in self.catalog.accounts

    def principals(self) -> dict[str, list[str]]:
        """Principal ARN -> the Slack users mapped to it."""
        out: dict[str, list[str]] = {}
        for user, arn in sorted(self.catalog.principals.items()):
            out.setdefault(arn, []).append(user)
        return out

    def users(self) -> list[Principal]:
        """The IAM-user principals (the only ones group_membership / inline_policy can serve)."""
        out = []
        for arn in self.principals():
            try:
                p = parse_principal(arn)
            except TargetError:
                continue
            if p.kind == "user":
                out.append(p)
        return out


# ---- AWS error helpers ---------------------------------------------------------------------------
def is_denied(exc: BaseException) -> bool:
    return error_code(exc) in DENIED_CODES


def action_of(exc: BaseException) -> str:
    op = getattr(exc, "operation_name", None)
    return f"iam:{op}" if op else type(exc).__name__


def describe(exc: BaseException) -> str:
    return f"{error_code(exc) or type(exc).__name__}: {exc}"


def paginate(iam: Any, op: str, key: str, **kwargs: Any) -> Iterator[Any]:
    for page in iam.get_paginator(op).paginate(**kwargs):
        yield from page.get(key, [])


def as_document(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        return dict(json.loads(unquote(raw)))
    return dict(raw)


# ---- policy matching (pure) ----------------------------------------------------------------------
def glob(pattern: str, value: str, *, fold: bool) -> bool:
    """IAM wildcard match: * any run of characters, ? one character (nothing else is special)."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if fold else re.DOTALL) is not None


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def statements(document: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    raw = (document or {}).get("Statement", [])
    return [s for s in (raw if isinstance(raw, list) else [raw]) if isinstance(s, Mapping)]


def _field_matches(stmt: Mapping[str, Any], key: str, value: str, *, fold: bool, variables: Mapping[str, str]) -> bool:
    def sub(p: str) -> str:
        for name, v in variables.items():
            p = p.replace("${" + name + "}", v)
        return p

    if key in stmt:
        return any(glob(sub(p), value, fold=fold) for p in as_list(stmt[key]))
    if "Not" + key in stmt:
        return not any(glob(sub(p), value, fold=fold) for p in as_list(stmt["Not" + key]))
    return False


def statement_applies(stmt: Mapping[str, Any], action: str, resource: str,
                      variables: Mapping[str, str] | None = None) -> bool:
    """Does an identity-policy statement cover (action, resource)? Conditions are not evaluated here."""
    variables = variables or {}
    return _field_matches(stmt, "Action", action, fold=True, variables=variables) and \
        _field_matches(stmt, "Resource", resource, fold=False, variables=variables)


@dataclass(frozen=True)
class Named:
    """A policy document and where it comes from (for the report)."""

    source: str
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    allowed_by: tuple[str, ...] = ()
    conditional_allow: bool = False  # every allowing statement carries a Condition
    denied_by: tuple[str, ...] = ()  # unconditional explicit denies
    maybe_denied_by: tuple[str, ...] = ()  # explicit denies with a Condition (not evaluated)


def evaluate(policies: Iterable[Named], action: str, resource: str,
             variables: Mapping[str, str] | None = None) -> Verdict:
    allowed: list[str] = []
    plain_allow = False
    denied: list[str] = []
    maybe: list[str] = []
    for policy in policies:
        for stmt in statements(policy.document):
            if not statement_applies(stmt, action, resource, variables):
                continue
            effect = str(stmt.get("Effect", "")).lower()
            if effect == "allow":
                allowed.append(policy.source)
                plain_allow = plain_allow or not stmt.get("Condition")
            elif effect == "deny":
                (maybe if stmt.get("Condition") else denied).append(policy.source)
    return Verdict(tuple(dict.fromkeys(allowed)), bool(allowed) and not plain_allow,
                   tuple(dict.fromkeys(denied)), tuple(dict.fromkeys(maybe)))


def trusts(document: Mapping[str, Any], principal: Principal) -> bool:
    """Does a trust policy let `principal` (or its whole account) call sts:AssumeRole? Conditions aside."""
    wanted = {principal.arn, principal.account, f"arn:aws:iam::{principal.account}:root", "*"}
    for stmt in statements(document):
        if str(stmt.get("Effect", "")).lower() != "allow":
            continue
        if not _field_matches(stmt, "Action", ASSUME, fold=True, variables={}):
            continue
        who = stmt.get("Principal")
        names = ["*"] if who == "*" else as_list(who.get("AWS")) if isinstance(who, Mapping) else []
        if wanted.intersection(names):
            return True
    return False


def assume_snippet(resource: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ASSUME, "Resource": resource}]})


def trust_snippet(account: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "TrustIdentityAccount", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": ASSUME}]})


# ---- reading identity policies -------------------------------------------------------------------
def managed_document(env: Env, iam: Any, arn: str) -> Mapping[str, Any]:
    if arn not in env.managed_docs:
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
        env.managed_docs[arn] = as_document(doc)
    return env.managed_docs[arn]


def owner_policies(env: Env, iam: Any, noun: str, name: str) -> list[Named]:
    """Inline and attached policies of one user, group or role."""
    who = {f"{noun.capitalize()}Name": name}
    out = []
    for pname in paginate(iam, f"list_{noun}_policies", "PolicyNames", **who):
        doc = getattr(iam, f"get_{noun}_policy")(PolicyName=pname, **who)["PolicyDocument"]
        out.append(Named(f"inline policy {pname} of {noun} {name}", as_document(doc)))
    for attached in paginate(iam, f"list_attached_{noun}_policies", "AttachedPolicies", **who):
        out.append(Named(f"managed policy {attached['PolicyName']} attached to {noun} {name}",
                         managed_document(env, iam, attached["PolicyArn"])))
    return out


def identity_policies(env: Env, iam: Any, principal: Principal) -> list[Named]:
    """Everything that can allow the principal an action: its own policies and (for users) its groups'."""
    out = owner_policies(env, iam, principal.kind, principal.name)
    if principal.kind == "user":
        for group in paginate(iam, "list_groups_for_user", "Groups", UserName=principal.name):
            out += owner_policies(env, iam, "group", group["GroupName"])
    return out


def boundary_document(env: Env, iam: Any, principal: Principal) -> Named | None:
    info = env.principal_info.get(principal.arn) or {}
    arn = (info.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn")
    if not arn:
        return None
    return Named(f"permissions boundary {arn}", managed_document(env, iam, arn))


def lookup_principal(env: Env, principal: Principal) -> dict[str, Any] | None:
    """get_user / get_role in the principal's account, cached; None when it does not exist."""
    if principal.arn not in env.principal_info:
        iam = env.iam(principal.account)
        try:
            if principal.kind == "user":
                env.principal_info[principal.arn] = dict(iam.get_user(UserName=principal.name)["User"])
            else:
                env.principal_info[principal.arn] = dict(iam.get_role(RoleName=principal.name)["Role"])
        except Exception as exc:
            if not is_not_found(exc):
                raise
            env.principal_info[principal.arn] = None
    return env.principal_info[principal.arn]


def caller_arn(env: Env, account: str) -> str | None:
    """The principal whose policies decide Keyturn's calls in `account` (None: cannot be simulated)."""
    if account not in env.callers:
        acct = env.catalog.account(account)
        arn: str | None = acct.manager_role_arn if acct else None
        if not arn:
            try:
                raw = str(env.clients.sts().get_caller_identity()["Arn"])
            except Exception:
                raw = ""
            part, _, rest = raw.partition(":sts::")
            if ":assumed-role/" in raw:
                name = raw.split("/")[1]
                try:
                    arn = str(env.iam(account).get_role(RoleName=name)["Role"]["Arn"])
                except Exception:
                    arn = f"{part}:iam::{rest.split(':')[0]}:role/{name}"
            elif raw.endswith(":root") or not raw:
                arn = None
            else:
                arn = f"{part}:iam::{rest}" if rest else raw
        env.callers[account] = arn
    return env.callers[account]


# ---- checks: accounts and principals -------------------------------------------------------------
def check_accounts(env: Env) -> list[CheckResult]:
    """Each account is reached as itself: through its manager role, or by credentials living in it."""
    out = []
    caller: dict[str, Any] | None = None
    for acct in sorted(env.catalog.accounts.values(), key=lambda a: a.id):
        name = f"account {acct.label}"
        if acct.manager_role_arn:
            owner = acct.manager_role_arn.split(":")[4]
            if owner != acct.id:
                out.append(CheckResult(ACCOUNTS, "account-access", Status.FAIL,
                                       f"{name}: manager_role_arn {acct.manager_role_arn} lives in account {owner}",
                                       f"use a manager role in account {acct.id}"))
                continue
            try:
                env.iam(acct.id)
            except Exception as exc:
                out.append(CheckResult(ACCOUNTS, "account-access", Status.FAIL,
                                       f"{name}: cannot assume {acct.manager_role_arn} ({describe(exc)})",
                                       "let Keyturn's identity call sts:AssumeRole on it and trust Keyturn in the "
                                       "manager role's trust policy (config/iam)"))
                continue
            out.append(CheckResult(ACCOUNTS, "account-access", Status.OK,
                                   f"{name}: assumed manager role {acct.manager_role_arn}"))
            continue
        try:
            caller = caller or dict(env.clients.sts().get_caller_identity())
        except Exception as exc:
            out.append(CheckResult(ACCOUNTS, "account-access", Status.FAIL,
                                   f"{name}: cannot tell whose credentials Keyturn has ({describe(exc)})",
                                   "give Keyturn AWS credentials (instance role, environment, profile)"))
            continue
        if str(caller.get("Account")) != acct.id:
            out.append(CheckResult(ACCOUNTS, "account-access", Status.FAIL,
                                   f"{name}: no manager_role_arn, and Keyturn's credentials ({caller.get('Arn')}) "
                                   f"are in account {caller.get('Account')}: every call for {acct.id} lands there",
                                   f"set accounts[].manager_role_arn for {acct.id}"))
        else:
            out.append(CheckResult(ACCOUNTS, "account-access", Status.OK,
                                   f"{name}: Keyturn's own credentials ({caller.get('Arn')})"))
    return out


def check_principals(env: Env) -> list[CheckResult]:
    out = []
    for arn, slack_users in env.principals().items():
        who = f"{arn} (for {', '.join(slack_users)})"
        try:
            principal = parse_principal(arn)
        except TargetError as exc:
            out.append(CheckResult(PRINCIPALS, "principal-exists", Status.FAIL, f"{who}: {exc}",
                                   "write an IAM user or role ARN in principals"))
            continue
        if not env.managed(principal.account):
            out.append(CheckResult(PRINCIPALS, "principal-exists", Status.WARN,
                                   f"{who}: account {principal.account} not managed, cannot check",
                                   f"add account {principal.account} to accounts (a manager role that can read "
                                   "IAM is enough) to have it checked"))
            continue
        try:
            info = lookup_principal(env, principal)
        except Exception as exc:
            status = Status.WARN if is_denied(exc) else Status.FAIL
            out.append(CheckResult(PRINCIPALS, "principal-exists", status, f"{who}: cannot check ({describe(exc)})",
                                   f"allow Keyturn {action_of(exc)} in account {principal.account}"))
            continue
        if info is None:
            out.append(CheckResult(PRINCIPALS, "principal-exists", Status.FAIL,
                                   f"{who}: {principal.kind} {principal.name} does not exist in {principal.account}",
                                   "create it, or correct the ARN in principals (IAM refuses trust policies that "
                                   "name a missing principal)"))
        elif info.get("Arn") != arn:
            out.append(CheckResult(PRINCIPALS, "principal-exists", Status.FAIL,
                                   f"{who}: IAM has {info.get('Arn')} instead (another path or account)",
                                   f"write {info.get('Arn')} in principals, or move the {principal.kind}"))
        else:
            out.append(CheckResult(PRINCIPALS, "principal-exists", Status.OK, f"{who}: exists"))
    return out
