"""The catalogue's people: `identities` (one entry per person, with a kind) and the old `principals` map.

Every check here exists because IAM would otherwise let in someone other than the one person approved:
a role ARN as a principal admits every session of that role, a shared identity makes two people one,
and two people with one session name cannot be told apart by a session cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.core.identity import SESSION_NAME, Identity, IdentityKind, SignInRole

SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
_NAME = r"[A-Za-z0-9_+=,.@-]"
USER_ARN = re.compile(rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:user(/{_NAME}+)*/{_NAME}{{2,64}}", re.ASCII)
ROLE_ARN = re.compile(rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:role(/{_NAME}+)*/{_NAME}{{1,64}}", re.ASCII)
# A permission set's role, by ARN: only IAM Identity Center's own (it names the session by the user name).
SSO_ROLE_ARN = re.compile(
    rf"arn:aws[a-z-]*:iam::[0-9]{{12}}:role/aws-reserved/sso\.amazonaws\.com/([a-z0-9-]+/)?AWSReservedSSO_{_NAME}+",
    re.ASCII)
ANY_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/.*", re.DOTALL | re.ASCII)
PERMISSION_SET = re.compile(r"[A-Za-z0-9_+=,.@-]{1,32}")
SSO_PATH = "/aws-reserved/sso.amazonaws.com/"

_ROLE_HINT = (
    "is an IAM role: every session of a role would be let in, not one person. Write the person under "
    "identities: as kind: sso_user (user_name and permission_sets) for IAM Identity Center, or kind: "
    "iam_role with role_arn and session_name for a federated role"
)


def _full(pattern: re.Pattern[str], error: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValidationError(error)
    return check


def legacy_principal(value: str) -> None:
    """`principals: {U…: arn}`: IAM users only, ASCII, a name that can be a role session name."""
    if isinstance(value, str) and ANY_ROLE_ARN.fullmatch(value):
        raise ValidationError(_ROLE_HINT)
    if not isinstance(value, str) or not USER_ARN.fullmatch(value):
        raise ValidationError(
            "must be an IAM user ARN (arn:aws:iam::<12 digits>:user/<name>), ASCII, with a name of 2-64 of "
            "A-Z a-z 0-9 _+=,.@- (AWS uses it as the role session name)")


class SignInRoleSchema(Schema):
    class Meta:
        unknown = RAISE

    arn = fields.String(load_default=None, validate=_full(
        SSO_ROLE_ARN, "must be an IAM Identity Center role ARN (…:role/aws-reserved/sso.amazonaws.com/"
                      "[region/]AWSReservedSSO_<set>_<hash>); a federated role is kind: iam_role"))
    account = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    permission_set = fields.String(
        load_default=None, validate=_full(PERMISSION_SET, "is not a permission set name (1-32 of A-Z a-z 0-9 _+=,.@-)"))

    @validates_schema(skip_on_field_errors=False)
    def _one_way(self, data: dict[str, Any], **kwargs: Any) -> None:
        by_arn = data.get("arn") is not None
        by_name = data.get("account") is not None or data.get("permission_set") is not None
        if by_arn == by_name:
            raise ValidationError("give either arn, or account and permission_set")
        if by_name and not (data.get("account") and data.get("permission_set")):
            raise ValidationError("give both account and permission_set")


class IdentitySchema(Schema):
    class Meta:
        unknown = RAISE

    slack = fields.String(required=True, validate=_full(SLACK_USER, "must be a Slack user id (U…)"))
    kind = fields.Enum(IdentityKind, by_value=True, required=True)
    arn = fields.String(load_default=None, validate=legacy_principal)
    user_name = fields.String(load_default=None, validate=_full(
        SESSION_NAME, "must be 2-64 of A-Z a-z 0-9 _+=,.@- (AWS uses it as the role session name)"))
    permission_sets = fields.List(fields.Nested(SignInRoleSchema), load_default=None,
                                  validate=validate.Length(min=1, max=10))
    role_arn = fields.String(load_default=None, validate=_full(ROLE_ARN, "must be an IAM role ARN (ASCII)"))
    session_name = fields.String(load_default=None, validate=_full(
        SESSION_NAME, "must be 2-64 of A-Z a-z 0-9 _+=,.@- (IAM's role session name)"))

    @validates_schema(skip_on_field_errors=True)
    def _by_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        needs = {
            IdentityKind.IAM_USER: ("arn",),
            IdentityKind.SSO_USER: ("user_name", "permission_sets"),
            IdentityKind.IAM_ROLE: ("role_arn", "session_name"),
        }[data["kind"]]
        errors: dict[str, list[str]] = {}
        for name in needs:
            if data.get(name) is None:
                errors.setdefault(name, []).append(f"is required for kind {data['kind'].value}")
        for name in ("arn", "user_name", "permission_sets", "role_arn", "session_name"):
            if name not in needs and data.get(name) is not None:
                errors.setdefault(name, []).append(f"is not used by kind {data['kind'].value}")
        if errors:
            raise ValidationError(errors)


def sign_in_roles(loaded: list[dict[str, Any]], alias_to_id: dict[str, str]) -> tuple[SignInRole, ...]:
    """Loaded SignInRoleSchema entries as values: by ARN, or by account (id or alias) + permission set."""
    return tuple(
        SignInRole(account=r["arn"].split(":")[4], arn=r["arn"]) if r.get("arn") else
        SignInRole(account=alias_to_id.get(r["account"], r["account"]), permission_set=r["permission_set"])
        for r in loaded)


def _identity_of(entry: dict[str, Any], alias_to_id: dict[str, str]) -> Identity:
    kind = entry["kind"]
    if kind is IdentityKind.IAM_USER:
        arn = entry["arn"]
        return Identity(entry["slack"], kind, session_name=arn.rsplit("/", 1)[-1], arn=arn)
    if kind is IdentityKind.SSO_USER:
        return Identity(entry["slack"], kind, session_name=entry["user_name"], user_name=entry["user_name"],
                        roles=sign_in_roles(entry["permission_sets"], alias_to_id))
    arn = entry["role_arn"]
    return Identity(entry["slack"], kind, session_name=entry["session_name"],
                    roles=(SignInRole(account=arn.split(":")[4], arn=arn),))


def build_identities(data: dict[str, Any], alias_to_id: dict[str, str]) -> dict[str, Identity]:
    out: dict[str, Identity] = {}
    for slack, arn in (data.get("principals") or {}).items():
        out[slack] = Identity(slack, IdentityKind.IAM_USER, session_name=arn.rsplit("/", 1)[-1], arn=arn)
    for entry in data.get("identities") or []:
        out[entry["slack"]] = _identity_of(entry, alias_to_id)
    return out


def check_identities(data: dict[str, Any], known_accounts: dict[str, str], errors: dict[str, Any]) -> None:
    """Cross-entry rules, on raw or loaded data: one entry per Slack id, one Slack id per person, and no
    two people with the same session name (a session cut could not tell them apart)."""
    seen: dict[str, str] = {}  # slack id -> where
    by_key: dict[str, str] = {}  # identity key -> where
    by_session: dict[str, str] = {}  # session name, case folded -> where

    def add(where: str, field: str, message: str) -> None:
        path = where.split(".")
        node = errors
        for part in path[:-1]:
            key: Any = int(part) if part.isdigit() else part
            node = node.setdefault(key, {})
        last: Any = int(path[-1]) if path[-1].isdigit() else path[-1]
        node.setdefault(last, {}).setdefault(field, []).append(message) if field else \
            node.setdefault(last, []).append(message)

    entries: list[tuple[str, str | None, str | None, str | None]] = []  # where, slack, key, session name
    principals = data.get("principals")
    if isinstance(principals, dict):
        for slack, arn in principals.items():
            if isinstance(arn, str) and USER_ARN.fullmatch(arn):
                entries.append((f"principals.{slack}", slack, arn, arn.rsplit("/", 1)[-1]))
    raw = data.get("identities")
    for i, entry in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(entry, dict):
            continue
        kind = str(getattr(entry.get("kind"), "value", entry.get("kind")))
        session = entry.get("user_name") if kind == "sso_user" else entry.get("session_name")
        key = None
        if kind == "iam_user" and isinstance(entry.get("arn"), str):
            key, session = entry["arn"], entry["arn"].rsplit("/", 1)[-1]
        elif kind == "sso_user" and isinstance(session, str):
            key = f"sso_user:{session}"
        elif kind == "iam_role" and isinstance(entry.get("role_arn"), str) and isinstance(session, str):
            key = f"iam_role:{entry['role_arn']}#{session}"
        entries.append((f"identities.{i}", entry.get("slack"), key, session if isinstance(session, str) else None))
        for j, role in enumerate(entry.get("permission_sets") or []):
            account = role.get("account") if isinstance(role, dict) else None
            if account and account not in known_accounts:
                add(f"identities.{i}.permission_sets.{j}", "account", f"account {account!r} is not in accounts")
    def shown(where: str) -> str:
        return re.sub(r"\.(\d+)", r"[\1]", where)

    for where, slack, key, session in entries:
        if isinstance(slack, str):
            if slack in seen:
                add(where, "slack" if where.startswith("identities") else "",
                    f"{slack} is already mapped at {shown(seen[slack])}: one entry per Slack user")
            seen.setdefault(slack, where)
        if key is not None:
            if key in by_key:
                add(where, "slack" if where.startswith("identities") else "",
                    f"is the same person as {shown(by_key[key])}: two Slack users cannot share one AWS identity")
            by_key.setdefault(key, where)
        if session is not None:
            folded = session.casefold()
            if folded in by_session and by_key.get(key or "") == where:
                add(where, "session_name" if where.startswith("identities") else "",
                    f"session name {session!r} is also {shown(by_session[folded])}'s: on a role their sessions could "
                    "not be told apart (session cuts and pins match on it)")
            by_session.setdefault(folded, where)
