"""Tables: requests, approvals, grants, targets, owned memberships and the append-only audit log."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back timezone-aware UTC datetimes, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AccessRequest(Base):
    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    role_id: Mapped[str] = mapped_column(String(64), index=True)
    requester: Mapped[str] = mapped_column(String(32), index=True)
    team_id: Mapped[str | None] = mapped_column(String(32))
    principal_arn: Mapped[str] = mapped_column(String(2048))  # for display: the ARN the identity signs in as
    # The person as the catalogue named them when filed (core.identity.Identity.key).
    identity_key: Mapped[str | None] = mapped_column(String(2048))
    duration_seconds: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    ticket: Mapped[str | None] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decision_note: Mapped[str | None] = mapped_column(Text)
    break_glass: Mapped[bool] = mapped_column(Boolean, default=False)
    extends_grant_id: Mapped[int | None] = mapped_column(ForeignKey("grants.id", use_alter=True))
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Slack's id of the interaction that filed it: a redelivered filing finds its request instead of a twin.
    client_token: Mapped[str | None] = mapped_column(String(128), index=True, unique=True)


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_approval_once"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    approver: Mapped[str] = mapped_column(String(32))
    vote: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Slack's id of the click that cast it: a redelivered click is told apart from a second click.
    client_token: Mapped[str | None] = mapped_column(String(128))


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (Index("ix_grants_target_state", "target_key", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), unique=True)
    role_id: Mapped[str] = mapped_column(String(64), index=True)
    requester: Mapped[str] = mapped_column(String(32), index=True)
    principal_arn: Mapped[str] = mapped_column(String(2048))
    identity_key: Mapped[str | None] = mapped_column(String(2048))
    cut_key: Mapped[str | None] = mapped_column(String(512))  # the role_sessions target of its session cut
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # IAM first verified to hold it
    target_key: Mapped[str] = mapped_column(String(512))
    lease_key: Mapped[str] = mapped_column(String(2048))
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    session_name: Mapped[str | None] = mapped_column(String(64))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    state: Mapped[str] = mapped_column(String(24), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(16))
    end_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_by: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=0)


class Target(Base):
    """One IAM document Keyturn reconciles: a trust policy, a group, an inline policy."""

    __tablename__ = "targets"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    dirty_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_hash: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # What Keyturn owns there as last read back: {"statements": [...]} (documents, session cuts) or
    # {"members": [...]} (groups, Identity Center users). For people reviewing a grant, not for decisions.
    last_owned: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class OwnedMembership(Base):
    """A group membership Keyturn added; only these are ever removed by Keyturn."""

    __tablename__ = "owned_memberships"

    target_key: Mapped[str] = mapped_column(String(512), primary_key=True)
    member: Mapped[str] = mapped_column(String(128), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(48), index=True)
    request_id: Mapped[int | None] = mapped_column(Integer, index=True)
    grant_id: Mapped[int | None] = mapped_column(Integer, index=True)
    target_key: Mapped[str | None] = mapped_column(String(512))
    hash_before: Mapped[str | None] = mapped_column(String(64))
    hash_after: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ProcessedEvent(Base):
    """Slack deliveries already handled (retries carry the same id), and messages the notifier sent once
    ("notice:" keys, so a retried notification does not repeat them)."""

    __tablename__ = "processed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SlackMessage(Base):
    """A message Keyturn posted and will update in place (the approvers' request message)."""

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("request_id", "channel", name="uq_slack_message"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("requests.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    ts: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="approvers")


class SecurityKey(Base):
    """A WebAuthn credential a person registered in the console, to confirm approvals (service/console)."""

    __tablename__ = "security_keys"
    __table_args__ = (Index("ix_security_keys_person", "user_id", "team_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(32))  # the Slack user id
    team_id: Mapped[str] = mapped_column(String(32))  # the Slack workspace they signed in from
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url, at most 1023 bytes raw
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[str | None] = mapped_column(String(128))  # comma-separated, as the browser reported
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SecurityKeyChallenge(Base):
    """A WebAuthn challenge handed to one person for one purpose (registering, or confirming one request);
    deleted when used, so each is good once, and refused once older than its lifetime."""

    __tablename__ = "security_key_challenges"

    challenge: Mapped[str] = mapped_column(String(128), primary_key=True)  # base64url
    user_id: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(64))  # "register" or "confirm:<request id>"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
