"""Reading and validating the catalogue YAML with marshmallow; every error carries its path."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from service.catalog.email_lookup import EmailLookupSchema, build_email_lookup, check_email_lookup
from service.catalog.identities import IdentitySchema, build_identities, check_identities, legacy_principal
from service.catalog.model import Account, Catalog, IdentityCenter, Role, Strategy
from service.core.durations import DurationError, parse_duration

# Whole strings, ASCII only: `\Z`, not `$` (which also matches before a trailing newline).
ACCOUNT_ID = re.compile(r"^[0-9]{12}\Z")
SLACK_APPROVER = re.compile(r"^[UWS][A-Z0-9]{2,}\Z")
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}\Z")
ROLE_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,64}\Z")
ROLE_PATH = re.compile(r"^/([\x21-\x7e]+/)?\Z")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\x21-\x7e]+\Z")
PERMISSION_SET_NAME = re.compile(r"^[A-Za-z0-9_+=,.@-]{1,32}\Z")
SWITCH_ROLE_MAX = 64  # the console's Switch Role form takes path + name up to 64 characters


class CatalogError(Exception):
    """An invalid catalogue; `errors` lists every problem as 'path: message'."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid catalogue:\n" + "\n".join(f"  {e}" for e in errors))


class Duration(fields.Field):
    """`30m`, `2h`, `1d`."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:
        try:
            return parse_duration(str(value))
        except DurationError as exc:
            raise ValidationError(str(exc)) from exc


class AccountSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(
        required=True,
        validate=validate.Regexp(ACCOUNT_ID, error="must be a 12-digit AWS account id (quote it)"),
        error_messages={"invalid": "must be a 12-digit AWS account id written as a quoted string"},
    )
    alias = fields.String(load_default=None, validate=validate.Length(min=1, max=63))
    manager_role_arn = fields.String(
        load_default=None, validate=validate.Regexp(ROLE_ARN, error="must be an IAM role ARN")
    )


class RoleSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(
        required=True,
        validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,62}\Z", error="use lowercase letters, digits and -"),
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=64))
    account = fields.String(required=True, validate=validate.Length(min=1))
    role_name = fields.String(
        load_default=None, validate=validate.Regexp(ROLE_NAME, error="is not a valid IAM role name")
    )
    path = fields.String(
        load_default="/", validate=validate.Regexp(ROLE_PATH, error="must start and end with / (e.g. /ops/)")
    )
    strategy = fields.Enum(Strategy, by_value=True, load_default=Strategy.TRUST_POLICY)
    group = fields.String(load_default=None, validate=validate.Regexp(ROLE_NAME, error="is not an IAM group name"))
    permission_set = fields.String(
        load_default=None,
        validate=validate.Regexp(PERMISSION_SET_NAME, error="is not an IAM Identity Center permission set name"),
    )
    approvers = fields.List(
        fields.String(
            validate=validate.Regexp(SLACK_APPROVER, error="must be a Slack user (U…) or user-group (S…) id")
        ),
        load_default=list,
    )
    approvers_channel = fields.String(load_default=None)
    min_approvals = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10))
    auto_approve = fields.Boolean(load_default=False)
    default_duration = Duration(load_default=timedelta(hours=1))
    max_duration = Duration(load_default=timedelta(hours=4))
    require_reason = fields.Boolean(load_default=True)
    require_mfa = fields.Boolean(load_default=False)
    allow_self_approval = fields.Boolean(load_default=False)
    require_security_key = fields.Boolean(load_default=False)
    break_glass_requires_security_key = fields.Boolean(load_default=False)
    color = fields.String(
        load_default=None, validate=validate.Regexp(r"^[0-9A-Fa-f]{6}\Z", error="must be 6 hex digits, e.g. F2B0A9")
    )

    @validates_schema(skip_on_field_errors=False)
    def _cross_checks(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        name, path = data.get("role_name"), data.get("path", "/")
        if isinstance(name, str) and isinstance(path, str):
            full = f"{path.lstrip('/')}{name}"
            if len(full) > SWITCH_ROLE_MAX:
                errors.setdefault("path", []).append(
                    f"path + role name is {len(full)} characters; the console Switch Role form takes at most "
                    f"{SWITCH_ROLE_MAX}"
                )
        default, longest = data.get("default_duration"), data.get("max_duration")
        if isinstance(default, timedelta) and isinstance(longest, timedelta) and default > longest:
            errors.setdefault("default_duration", []).append("is longer than max_duration")
        # A field that failed to load is absent here: do not report it a second time as "empty".
        if "approvers" in data and "auto_approve" in data and not data["approvers"] and not data["auto_approve"]:
            errors.setdefault("approvers", []).append(
                "is empty; list approvers or set auto_approve: true explicitly"
            )
        approvers = data.get("approvers") or []
        users = [a for a in approvers if isinstance(a, str) and not a.startswith("S")]
        groups = [a for a in approvers if isinstance(a, str) and a.startswith("S")]
        if not groups and approvers and data.get("min_approvals", 1) > len(set(users)):
            errors.setdefault("min_approvals", []).append(
                f"needs {data.get('min_approvals')} distinct approvers but only {len(set(users))} are listed"
            )
        if data.get("break_glass_requires_security_key") and not data.get("allow_self_approval"):
            errors.setdefault("break_glass_requires_security_key", []).append(
                "needs allow_self_approval: true (there is no break-glass self-approval to confirm)")
        for flag in ("require_security_key", "break_glass_requires_security_key"):
            if data.get(flag) and data.get("auto_approve"):  # approved at filing: no vote, so no key, is asked
                errors.setdefault(flag, []).append("cannot be combined with auto_approve (no approval to confirm)")
        if data.get("strategy") is Strategy.GROUP_MEMBERSHIP and not data.get("group"):
            errors.setdefault("group", []).append("is required for strategy group_membership")
        if data.get("strategy") is Strategy.IDENTITY_CENTER:
            if not data.get("permission_set"):
                errors.setdefault("permission_set", []).append("is required for strategy identity_center")
        elif "role_name" in data and not data.get("role_name"):
            errors.setdefault("role_name", []).append("is required")
        elif data.get("permission_set"):
            errors.setdefault("permission_set", []).append("is only used by strategy identity_center")
        if errors:
            raise ValidationError(errors)


class IdentityCenterSchema(Schema):
    class Meta:
        unknown = RAISE

    instance_arn = fields.String(required=True, validate=validate.Regexp(
        r"^arn:aws[a-z-]*:sso:::instance/(sso)?ins-[a-zA-Z0-9-.]{16}\Z",
        error="must be an IAM Identity Center instance ARN (arn:aws:sso:::instance/ssoins-…)"))
    identity_store_id = fields.String(required=True, validate=validate.Regexp(
        r"^(d-[0-9a-f]{10}|[0-9a-f]{8}-[0-9a-f-]{27})\Z", error="must be an identity store id (d-…)"))
    region = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z]{2}(-[a-z]+)+-[0-9]\Z",
                                                                       error="is not an AWS region"))
    portal_url = fields.String(load_default=None, validate=validate.Regexp(
        r"^https://[A-Za-z0-9.-]+(/[\x21-\x7e]*)?\Z", error="must be the access portal's https URL"))


class SettingsSchema(Schema):
    class Meta:
        unknown = RAISE

    identity_center = fields.Nested(IdentityCenterSchema, load_default=None)
    email_lookup = fields.Nested(EmailLookupSchema, load_default=None)  # opt-in: service/catalog/email_lookup.py

    admins = fields.List(
        fields.String(validate=validate.Regexp(SLACK_USER, error="must be a Slack user id (U…)")), load_default=list
    )
    audit_channel = fields.String(load_default=None)
    trust_policy_max_chars = fields.Integer(load_default=2048, validate=validate.Range(min=256, max=8192))
    request_timeout = Duration(load_default=timedelta(hours=24))
    max_pending_per_person = fields.Integer(load_default=5, validate=validate.Range(min=1, max=100))
    # Managed policies Keyturn may attach to a role for its session cuts (IAM allows 10 per role by default;
    # README, "Cutting sessions that are already open", has the arithmetic).
    session_cut_pages = fields.Integer(load_default=4, validate=validate.Range(min=0, max=9))
    reminder_after = Duration(load_default=timedelta(minutes=30))


class CatalogSchema(Schema):
    class Meta:
        unknown = RAISE

    settings = fields.Nested(SettingsSchema, load_default=dict)
    accounts = fields.List(fields.Nested(AccountSchema), required=True, validate=validate.Length(min=1))
    roles = fields.List(fields.Nested(RoleSchema), required=True, validate=validate.Length(min=1))
    # The old form: Slack user id -> IAM user ARN (a role ARN is refused: it would admit everyone who
    # signs in with that role; identities says who the person is).
    principals = fields.Dict(
        keys=fields.String(validate=validate.Regexp(SLACK_USER, error="must be a Slack user id (U…)")),
        values=fields.String(validate=legacy_principal),
        load_default=dict,
    )
    identities = fields.List(fields.Nested(IdentitySchema), load_default=list)

    @validates_schema(skip_on_field_errors=False)
    def _references(self, data: dict[str, Any], **kwargs: Any) -> None:
        errors: dict[str, Any] = {}
        accounts = [a for a in data.get("accounts") or [] if isinstance(a, dict)]
        known: dict[str, str] = {}
        for i, acc in enumerate(accounts):
            for key in (acc.get("id"), acc.get("alias")):
                if not key:
                    continue
                if key in known:
                    field = "id" if key == acc.get("id") else "alias"
                    errors.setdefault("accounts", {}).setdefault(i, {}).setdefault(field, []).append(
                        f"duplicate account id or alias {key!r}"
                    )
                known[key] = acc.get("id", "")
        seen_roles: set[str] = set()
        for i, role in enumerate(data.get("roles") or []):
            if not isinstance(role, dict):
                continue
            where = errors.setdefault("roles", {}).setdefault(i, {})
            if role.get("id") in seen_roles:
                where.setdefault("id", []).append(f"duplicate role id {role.get('id')!r}")
            seen_roles.add(role.get("id", ""))
            if role.get("account") and role["account"] not in known:
                where.setdefault("account", []).append(f"account {role['account']!r} is not in accounts")
            settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
            if role.get("strategy") in (Strategy.IDENTITY_CENTER, "identity_center") and \
                    not (settings or {}).get("identity_center"):
                where.setdefault("strategy", []).append(
                    "identity_center needs settings.identity_center (instance_arn, identity_store_id)")
        check_identities(data, known, errors)
        check_email_lookup(data, known, errors)
        if "roles" in errors:
            errors["roles"] = {i: e for i, e in errors["roles"].items() if e}
            if not errors["roles"]:
                del errors["roles"]
        if errors:
            raise ValidationError(errors)


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            if key == "_schema":
                out.extend(_flatten(value, prefix))
                continue
            if isinstance(key, int):
                path = f"{prefix}[{key}]"
            elif key in ("key", "value") and prefix.startswith("principals."):
                path = prefix  # marshmallow's Dict nests "key"/"value"; the message says which one is wrong
            elif prefix:
                path = f"{prefix}.{key}"
            else:
                path = str(key)
            out.extend(_flatten(value, path))
    elif isinstance(messages, list):
        for item in messages:
            out.extend(_flatten(item, prefix))
    else:
        text = str(messages).rstrip(".")
        if text == "Unknown field":
            text = "is not a known field"
        elif text == "Missing data for required field":
            text = "is required"
        out.append(f"{prefix or '(top)'}: {text}")
    return out


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for k, v in b.items():
            out[k] = _merge(out[k], v) if k in out else v
        return out
    if isinstance(a, list) and isinstance(b, list):
        return a + [x for x in b if x not in a]
    return b


def parse_catalog(raw: Any) -> Catalog:
    """Validate a loaded YAML mapping; raise CatalogError listing every problem."""
    if not isinstance(raw, Mapping):
        raise CatalogError(["(top): the catalogue must be a mapping with accounts, roles and principals"])
    schema = CatalogSchema()
    errors = schema.validate(raw)
    if errors:
        # validates_schema on the whole catalogue only runs when the fields themselves load;
        # run the reference checks on the raw data too so one pass reports everything.
        try:
            schema._references(dict(raw))
        except ValidationError as exc:
            errors = _merge(errors, exc.messages)
        raise CatalogError(sorted(set(_flatten(errors)), key=_flatten(errors).index))
    data = schema.load(raw)
    return _build(data)


def _build(data: dict[str, Any]) -> Catalog:
    accounts = {a["id"]: Account(a["id"], a["alias"], a["manager_role_arn"]) for a in data["accounts"]}
    alias_to_id = {a.alias: a.id for a in accounts.values() if a.alias}
    roles = {}
    for r in data["roles"]:
        account = alias_to_id.get(r["account"], r["account"])
        roles[r["id"]] = Role(
            id=r["id"],
            name=r["name"],
            account=account,
            # identity_center has no target role of its own to name: the permission set makes one.
            role_name=r["role_name"] or f"AWSReservedSSO_{r['permission_set']}",
            path=r["path"],
            strategy=r["strategy"],
            group=r["group"],
            permission_set=r["permission_set"],
            approvers=frozenset(r["approvers"]),
            approvers_channel=r["approvers_channel"],
            min_approvals=r["min_approvals"],
            auto_approve=r["auto_approve"],
            default_duration=r["default_duration"],
            max_duration=r["max_duration"],
            require_reason=r["require_reason"],
            require_mfa=r["require_mfa"],
            allow_self_approval=r["allow_self_approval"],
            require_security_key=r["require_security_key"],
            break_glass_requires_security_key=r["break_glass_requires_security_key"],
            color=r["color"].upper() if r["color"] else None,
        )
    s = data["settings"]
    ic = s.get("identity_center")
    return Catalog(
        accounts=accounts,
        roles=roles,
        identities=build_identities(data, alias_to_id),
        identity_center=IdentityCenter(ic["instance_arn"], ic["identity_store_id"], ic["region"],
                                       ic["portal_url"]) if ic else None,
        email_lookup=build_email_lookup(s.get("email_lookup"), alias_to_id),
        admins=frozenset(s.get("admins", [])),
        audit_channel=s.get("audit_channel"),
        trust_policy_max_chars=s.get("trust_policy_max_chars", 2048),
        request_timeout=s.get("request_timeout", timedelta(hours=24)),
        max_pending_per_person=s.get("max_pending_per_person", 5),
        session_cut_pages=s.get("session_cut_pages", 4),
        reminder_after=s.get("reminder_after", timedelta(minutes=30)),
    )


def load_catalog(path: str | Path) -> Catalog:
    """Read and validate the catalogue file at `path`."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise CatalogError([f"{p}: cannot read: {exc.strerror}"]) from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        raise CatalogError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    return parse_catalog(raw)
