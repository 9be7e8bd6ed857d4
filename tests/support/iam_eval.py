"""An IAM policy evaluator that evaluates conditions: moto stores policies but decides nothing, so what a
document admits (exactly one person, until exactly the expiry second) is proven here, over the documents
read back from moto.

It follows AWS's documented evaluation logic for what Keyturn writes and reads:

* statements: Effect, Action/NotAction (case-insensitive wildcards), Resource/NotResource (case-sensitive,
  ARN segment by segment), Principal/NotPrincipal (`"*"`, `{"AWS": ...}`, `{"Service": ...}`; an account root
  or a bare account id matches every principal of that account; a role ARN matches that role's sessions);
* conditions: String*, Date*, Numeric*, Bool, Null, Arn*, IpAddress, BinaryEquals, the `...IfExists` suffix and
  the `ForAnyValue:` / `ForAllValues:` prefixes; operators and keys AND, the values of one key OR (negated
  operators: NOR); a missing key makes a positive operator false and a negated one true (IfExists: true;
  ForAllValues: true; ForAnyValue: false); condition keys are case-insensitive;
* policy variables (`${aws:username}`, `${aws:userid, 'default'}`, `${*}`, `${?}`, `${$}`) in Resource and in
  String/Arn condition values of "2012-10-17" documents; a variable that cannot be resolved matches nothing;
* decision: an explicit Deny wins, then an Allow, else implicit deny. `may_assume` adds the role-trust rule:
  cross-account needs the trust policy *and* the caller's identity policies; in the same account a trust
  statement naming the caller itself (or "*") suffices, one naming only its account needs the identity allow.

Not modelled: SCPs/RCPs, permissions boundaries, session policies, tags on sessions, service-specific
principal normalisation (IAM rewrites principal ARNs to unique ids; deleted principals never match).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

ContextValue = str | list[str]
Policy = Mapping[str, Any]  # a policy document ({"Statement": ...}) or one statement ({"Effect": ...})


class Outcome(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit deny"
    IMPLICIT_DENY = "implicit deny"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    sid: str | None = None  # the statement that decided (first matching Deny, else first matching Allow)
    reason: str = ""
    direct: bool = False  # an Allow whose Principal names the caller itself, not only its account

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    def __bool__(self) -> bool:
        return self.allowed

    def __str__(self) -> str:
        by = f" by {self.sid}" if self.sid else ""
        return f"{self.outcome.value}{by}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    principal_arn: str  # a user ARN, an sts assumed-role session ARN, or a service name
    context: Mapping[str, ContextValue] = field(default_factory=dict)


# ---- request contexts ---------------------------------------------------------------------------------
def iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and parts[0] == "arn" and parts[4] else None


def session_arn(role_arn: str, session_name: str) -> str:
    """arn:aws:iam::A:role/path/Name -> arn:aws:sts::A:assumed-role/Name/session (no path, as STS names it)."""
    _, partition, _, _, account, resource = role_arn.split(":", 5)
    return f"arn:{partition}:sts::{account}:assumed-role/{resource.rsplit('/', 1)[-1]}/{session_name}"


def _time_keys(at: datetime, mfa: bool | None) -> dict[str, ContextValue]:
    ctx: dict[str, ContextValue] = {"aws:CurrentTime": iso(at), "aws:EpochTime": str(int(at.timestamp()))}
    if mfa is not None:  # long-term access keys carry no aws:MultiFactorAuthPresent at all
        ctx["aws:MultiFactorAuthPresent"] = "true" if mfa else "false"
    return ctx


def user_assumes(user_arn: str, role_arn: str, *, at: datetime, session_name: str | None = None,
                 user_id: str = "AIDAEXAMPLEUSERID0001", mfa: bool | None = None) -> Request:
    """(a) An IAM user calling sts:AssumeRole on `role_arn` with RoleSessionName `session_name`."""
    ctx = _time_keys(at, mfa)
    ctx.update({"aws:PrincipalArn": user_arn, "aws:PrincipalAccount": account_of(user_arn) or "",
                "aws:PrincipalType": "User", "aws:username": user_arn.rsplit("/", 1)[-1], "aws:userid": user_id})
    if session_name is not None:
        ctx["sts:RoleSessionName"] = session_name
    return Request("sts:AssumeRole", role_arn, user_arn, ctx)


def session_assumes(caller_role_arn: str, caller_role_id: str, caller_session: str, role_arn: str, *,
                    at: datetime, issued_at: datetime | None = None, session_name: str | None = None,
                    mfa: bool | None = None) -> Request:
    """(b) A session of another role (e.g. an Identity Center permission-set role, `AROA…:carol@example.com`)
    calling sts:AssumeRole on `role_arn`; the new session is named `session_name` (default: the caller's)."""
    ctx = _session_keys(caller_role_arn, caller_role_id, caller_session, at, issued_at or at, mfa)
    ctx["sts:RoleSessionName"] = session_name if session_name is not None else caller_session
    return Request("sts:AssumeRole", role_arn, session_arn(caller_role_arn, caller_session), ctx)


def session_calls(role_arn: str, role_id: str, session_name: str, *, issued_at: datetime, at: datetime,
                  action: str = "s3:ListAllMyBuckets", resource: str = "*", mfa: bool | None = None) -> Request:
    """(c) An open session of `role_arn`, issued at `issued_at`, making any call at `at`."""
    ctx = _session_keys(role_arn, role_id, session_name, at, issued_at, mfa)
    return Request(action, resource, session_arn(role_arn, session_name), ctx)


def _session_keys(role_arn: str, role_id: str, session: str, at: datetime, issued_at: datetime,
                  mfa: bool | None) -> dict[str, ContextValue]:
    ctx = _time_keys(at, mfa)
    ctx.update({"aws:PrincipalArn": role_arn, "aws:PrincipalAccount": account_of(role_arn) or "",
                "aws:PrincipalType": "AssumedRole", "aws:userid": f"{role_id}:{session}",
                "aws:TokenIssueTime": iso(issued_at)})
    return ctx


# ---- wildcards and variables ----------------------------------------------------------------------------
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERAL = {"*": "*", "?": "?", "$": "$"}


class _Unresolved(Exception):
    pass


def _glob(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _expand(template: str, ctx: Mapping[str, list[str]] | None, *, glob: bool) -> str:
    """The template with policy variables substituted (a regex when `glob`); raises _Unresolved."""
    out, pos = [], 0
    for m in _VARIABLE.finditer(template) if ctx is not None else ():
        assert ctx is not None
        out.append(_glob(template[pos:m.start()]) if glob else template[pos:m.start()])
        name, _, default = (p.strip() for p in m.group(1).partition(","))
        if name in _LITERAL:
            value = _LITERAL[name]
        elif (values := ctx.get(name.lower())) and len(values) == 1:
            value = values[0]
        elif default.startswith("'") and default.endswith("'") and len(default) >= 2:
            value = default[1:-1]
        else:
            raise _Unresolved(name)
        out.append(re.escape(value) if glob else value)
        pos = m.end()
    out.append(_glob(template[pos:]) if glob else template[pos:])
    return "".join(out)


def _like(pattern: str, value: str, ctx: Mapping[str, list[str]] | None, *, fold: bool = False) -> bool:
    try:
        regex = _expand(pattern, ctx, glob=True)
    except _Unresolved:
        return False
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if fold else re.DOTALL) is not None


def _arn_like(pattern: str, value: str, ctx: Mapping[str, list[str]] | None) -> bool:
    """ARN matching as IAM does it: the six colon-separated parts one by one ("*" alone matches anything)."""
    if pattern == "*":
        return True
    want, have = pattern.split(":", 5), value.split(":", 5)
    return len(want) == len(have) and all(_like(w, h, ctx) for w, h in zip(want, have, strict=True))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# ---- condition operators ---------------------------------------------------------------------------------
def _date(value: str) -> datetime | None:
    try:
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, OverflowError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ordered(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> Callable[[str, str], bool]:
    def compare(have: str, want: str) -> bool:
        a, b = parse(have), parse(want)
        return a is not None and b is not None and bool(test(a, b))
    return compare


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _ip(have: str, want: str) -> bool:
    try:
        return ipaddress.ip_address(have) in ipaddress.ip_network(want, strict=False)
    except ValueError:
        return False


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b, "NotEquals": lambda a, b: a == b, "LessThan": lambda a, b: a < b,
    "LessThanEquals": lambda a, b: a <= b, "GreaterThan": lambda a, b: a > b,
    "GreaterThanEquals": lambda a, b: a >= b,
}
# name -> (test(context value, policy value), negated)
_PLAIN: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda a, b: a == b, False), "StringNotEquals": (lambda a, b: a == b, True),
    "StringEqualsIgnoreCase": (lambda a, b: a.casefold() == b.casefold(), False),
    "StringNotEqualsIgnoreCase": (lambda a, b: a.casefold() == b.casefold(), True),
    "Bool": (lambda a, b: a.lower() == b.lower(), False), "BinaryEquals": (lambda a, b: a == b, False),
    "IpAddress": (_ip, False), "NotIpAddress": (_ip, True),
    **{f"Date{n}": (_ordered(_date, t), n == "NotEquals") for n, t in _COMPARISONS.items()},
    **{f"Numeric{n}": (_ordered(_number, t), n == "NotEquals") for n, t in _COMPARISONS.items()},
}
_VARIABLE_OPERATORS = {"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"}
_WILDCARD = {"StringLike": False, "StringNotLike": True, "ArnLike": False, "ArnEquals": False,
             "ArnNotLike": True, "ArnNotEquals": True}


class UnknownOperator(ValueError):
    pass


def _value_test(op: str, policy_values: Sequence[str], ctx: Mapping[str, list[str]] | None,
                ) -> tuple[Callable[[str], bool], bool]:
    """(does one context value match any policy value?, negated) for operator `op`."""
    if op in _WILDCARD:
        match = _arn_like if op.startswith("Arn") else _like
        return (lambda v: any(match(p, v, ctx) for p in policy_values)), _WILDCARD[op]
    if op not in _PLAIN:
        raise UnknownOperator(op)
    test, negated = _PLAIN[op]
    wanted: list[str] = []
    for p in policy_values:
        try:
            wanted.append(_expand(p, ctx if op in _VARIABLE_OPERATORS else None, glob=False))
        except _Unresolved:
            continue  # a value naming an absent variable matches nothing
    return (lambda v: any(test(v, w) for w in wanted)), negated


def _condition_holds(op: str, key: str, raw_values: Any, ctx: Mapping[str, list[str]],
                     variables: Mapping[str, list[str]] | None) -> bool:
    set_op, _, base = op.rpartition(":")
    if set_op not in ("", "ForAnyValue", "ForAllValues"):
        raise UnknownOperator(op)
    policy_values = [_text(v) for v in _as_list(raw_values)]
    have = ctx.get(key.lower(), [])
    if base == "Null":
        return any((v.lower() == "true") == (not have) for v in policy_values)
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    matches, negated = _value_test(base, policy_values, variables)
    if not have:
        return {"ForAllValues": True, "ForAnyValue": False}.get(set_op, if_exists or negated)
    if set_op == "ForAllValues":
        return all(matches(v) != negated for v in have)
    if set_op == "ForAnyValue":
        return any(matches(v) != negated for v in have)
    hit = any(matches(v) for v in have)
    return not hit if negated else hit


def conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, ContextValue],
                    *, variables: bool = True) -> bool:
    """Every operator and every key of a Condition block holds in `context` (AND of all)."""
    ctx = _lowered(context)
    return all(_condition_holds(op, key, values, ctx, ctx if variables else None)
               for op, block in (condition or {}).items() for key, values in block.items())


def _lowered(context: Mapping[str, ContextValue]) -> dict[str, list[str]]:
    return {k.lower(): [_text(x) for x in _as_list(v)] for k, v in context.items()}


# ---- statements ------------------------------------------------------------------------------------------
def _principals(request: Request) -> tuple[set[str], set[str]]:
    """(what names the caller itself, what names only its account)."""
    itself = {request.principal_arn}
    principal_arn = request.context.get("aws:PrincipalArn")
    if isinstance(principal_arn, str):
        itself.add(principal_arn)
    account = account_of(request.principal_arn)
    return itself, ({account, f"arn:aws:iam::{account}:root"} if account else set())


def _principal_match(element: Any, request: Request) -> str | None:
    """"direct", "account" or None: does a Principal element cover the caller, and how."""
    if element == "*":
        return "direct"
    if not isinstance(element, Mapping):
        return None
    itself, account = _principals(request)
    names = {_text(v) for kind, values in element.items() for v in _as_list(values)
             if kind in ("AWS", "Service", "Federated", "CanonicalUser")}
    if "*" in _as_list(element.get("AWS")) or names & itself:
        return "direct"
    return "account" if names & account else None


def _statements(policies: Iterable[Policy]) -> Iterable[Mapping[str, Any]]:
    for policy in policies:
        if "Statement" in policy:
            yield from ({**s, "_version": policy.get("Version", "2008-10-17")} for s in _as_list(policy["Statement"]))
        else:
            yield policy


def statement_matches(statement: Mapping[str, Any], request: Request) -> str | None:
    """None if the statement does not apply to the request, else how its principal matched ("direct",
    "account", or "identity" for a statement without Principal)."""
    version = statement.get("_version", "2012-10-17")
    variables = _lowered(request.context) if version == "2012-10-17" else None
    if "Action" in statement:
        hit = any(_like(a, request.action, None, fold=True) for a in _as_list(statement["Action"]))
    else:
        hit = not any(_like(a, request.action, None, fold=True) for a in _as_list(statement.get("NotAction")))
    if not hit:
        return None
    if "Resource" in statement:
        hit = any(_arn_like(r, request.resource, variables) for r in _as_list(statement["Resource"]))
    elif "NotResource" in statement:
        hit = not any(_arn_like(r, request.resource, variables) for r in _as_list(statement["NotResource"]))
    if not hit:
        return None
    how = "identity"
    if "Principal" in statement:
        how = _principal_match(statement["Principal"], request) or ""
    elif "NotPrincipal" in statement:
        how = "" if _principal_match(statement["NotPrincipal"], request) else "direct"
    if not how or not conditions_hold(statement.get("Condition"), request.context, variables=variables is not None):
        return None
    return how


def evaluate(policies: Iterable[Policy], request: Request) -> Decision:
    """AWS's order over every statement of `policies`: an explicit Deny wins, then an Allow, else implicit."""
    allow: tuple[Mapping[str, Any], str] | None = None
    for statement in _statements(policies):
        how = statement_matches(statement, request)
        if how is None:
            continue
        if statement.get("Effect") == "Deny":
            return Decision(Outcome.EXPLICIT_DENY, statement.get("Sid"), "an explicit Deny applies")
        if statement.get("Effect") == "Allow" and (allow is None or (how == "direct" and allow[1] != "direct")):
            allow = (statement, how)
    if allow is None:
        return Decision(Outcome.IMPLICIT_DENY, None, "no statement allows it")
    return Decision(Outcome.ALLOW, allow[0].get("Sid"), direct=allow[1] == "direct")


def may_assume(trust_policy: Policy, identity_policies: Iterable[Policy], request: Request) -> Decision:
    """May the caller of `request` (an sts:AssumeRole on the role) assume it, given the role's trust policy
    and the caller's own identity policies (its user/role/group policies)?"""
    trust, identity = evaluate([trust_policy], request), evaluate(identity_policies, request)
    for decision in (trust, identity):
        if decision.outcome is Outcome.EXPLICIT_DENY:
            return decision
    if not trust.allowed:
        return Decision(Outcome.IMPLICIT_DENY, None, "the trust policy does not admit this caller")
    same_account = account_of(request.principal_arn) == account_of(request.resource)
    if same_account and trust.direct:
        return trust
    if identity.allowed:
        return Decision(Outcome.ALLOW, trust.sid, f"trust {trust.sid}, identity {identity.sid}", trust.direct)
    where = "names only the caller's account" if same_account else "is cross-account"
    return Decision(Outcome.IMPLICIT_DENY, trust.sid, f"the trust {where}; no identity policy allows it")


def session_may(role_policies: Iterable[Policy], request: Request) -> Decision:
    """May an open session of a role (see `session_calls`) make the call, under the role's permission
    policies (managed and inline, e.g. Keyturn's `keyturn-revoked-sessions` deny)?"""
    if request.context.get("aws:PrincipalType") != "AssumedRole" or "aws:TokenIssueTime" not in request.context:
        raise ValueError("session_may wants a role session's request (session_calls)")
    return evaluate(role_policies, request)


def document(*statements: Mapping[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}
