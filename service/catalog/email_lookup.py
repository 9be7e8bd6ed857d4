"""`settings.email_lookup`: opt-in, people the catalogue does not name found by their Slack profile email.

Off unless written. When on, a Slack user with no catalogue entry is looked up (service/people): Slack
`users.info` gives the profile email, the Identity Store must hold exactly one user with it, and that user
signs in with the permission sets listed here, so their trust statements can be pinned like any sso_user's.

    settings:
      identity_center: {instance_arn: ..., identity_store_id: ...}
      email_lookup:
        permission_sets:
          - {account: prod, permission_set: Admin}
        max_age: 10m         # a lookup older than this is never used
        max_entries: 10000   # people remembered at once (least recently used forgotten first)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from service.catalog.identities import SignInRoleSchema, sign_in_roles
from service.core.durations import DurationError, parse_duration
from service.core.identity import SignInRole

MIN_AGE, MAX_AGE = timedelta(seconds=1), timedelta(hours=24)


@dataclass(frozen=True)
class EmailLookup:
    roles: tuple[SignInRole, ...]  # the permission-set roles an email-found person signs in with
    max_age: timedelta = timedelta(minutes=10)
    max_entries: int = 10_000


class _Age(fields.Field):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> timedelta:
        try:
            age = parse_duration(str(value))
        except DurationError as exc:
            raise ValidationError(str(exc)) from exc
        if not MIN_AGE <= age <= MAX_AGE:
            raise ValidationError("must be between 1s and 24h (a lookup older than this is never used)")
        return age


class EmailLookupSchema(Schema):
    class Meta:
        unknown = RAISE

    permission_sets = fields.List(fields.Nested(SignInRoleSchema), required=True,
                                  validate=validate.Length(min=1, max=10, error="list 1 to 10 permission sets"))
    max_age = _Age(load_default=timedelta(minutes=10))
    max_entries = fields.Integer(load_default=10_000, validate=validate.Range(min=1, max=1_000_000))


def check_email_lookup(data: dict[str, Any], known_accounts: dict[str, str], errors: dict[str, Any]) -> None:
    """Cross-section rules, on raw or loaded data: Identity Center must be configured, and each permission
    set's account must be in `accounts`."""
    settings = data.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("email_lookup"), dict):
        return
    lookup = settings["email_lookup"]
    where = errors.setdefault("settings", {}).setdefault("email_lookup", {})
    if not settings.get("identity_center"):
        where.setdefault("_schema", []).append(
            "needs settings.identity_center (its identity store is where people are found by email)")
    for i, role in enumerate(lookup.get("permission_sets") or []):
        account = role.get("account") if isinstance(role, dict) else None
        if account and account not in known_accounts:
            where.setdefault("permission_sets", {}).setdefault(i, {}).setdefault("account", []).append(
                f"account {account!r} is not in accounts")
    if not where:
        del errors["settings"]["email_lookup"]
        if not errors["settings"]:
            del errors["settings"]


def build_email_lookup(loaded: dict[str, Any] | None, alias_to_id: dict[str, str]) -> EmailLookup | None:
    if not loaded:
        return None
    return EmailLookup(roles=sign_in_roles(loaded["permission_sets"], alias_to_id), max_age=loaded["max_age"],
                       max_entries=loaded["max_entries"])
