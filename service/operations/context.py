"""What every use case is handed: the store, the catalogue, the clock and the dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from service.catalog import Catalog
from service.catalog.model import Role
from service.core.identity import Identity
from service.core.rules import MESSAGES, Actor, Reason


class Dispatcher(Protocol):
    """Wakes workers up after a commit. Losing a wake-up never loses access changes: the sweeper re-sends."""

    def sync(self, target_key: str, *, force: bool = False, urgent: bool = False) -> None:
        """Wake a sync of the target; `urgent` (it ends access) goes ahead of all other queued work."""
    def sync_at(self, target_key: str, when: datetime) -> None:
        """Wake an urgent sync of the target at `when` (a short countdown: expiries within a sweep or two)."""
    def notify(self, event: str, **ids: Any) -> None: ...
    def interact(self, kind: str, payload: dict[str, Any]) -> None:
        """Queue an acknowledged Slack interaction for a worker; raises if it could not be queued."""


class Refused(Exception):
    """A rule said no; `reason` is the core's enum, the message is fit to show the user."""

    def __init__(self, reason: Reason, message: str | None = None):
        self.reason = reason
        super().__init__(message or MESSAGES.get(reason, reason.value))


class NotFound(Exception):
    """No such request or grant."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RecordingDispatcher:
    """Keeps wake-ups in memory; for the CLI's inline mode and for tests of single use cases."""

    syncs: list[str] = field(default_factory=list)
    urgent_syncs: list[str] = field(default_factory=list)
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    timed: list[tuple[str, datetime]] = field(default_factory=list)
    interactions: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def sync(self, target_key: str, *, force: bool = False, urgent: bool = False) -> None:
        self.syncs.append(target_key)
        if urgent:
            self.urgent_syncs.append(target_key)

    def sync_at(self, target_key: str, when: datetime) -> None:
        self.timed.append((target_key, when))

    def notify(self, event: str, **ids: Any) -> None:
        self.notes.append((event, ids))

    def interact(self, kind: str, payload: dict[str, Any]) -> None:
        self.interactions.append((kind, payload))


@dataclass
class Context:
    store: sessionmaker[Session]
    catalog: Catalog
    dispatch: Dispatcher
    now: Callable[[], datetime] = utcnow
    # Slack user-group membership, resolved outside the core (Slack API in production).
    groups_of: Callable[[str], frozenset[str]] = lambda _user: frozenset()

    # Who a Slack user is in AWS: the catalogue, or (opt-in) a resolver that also finds people by their Slack
    # email in the Identity Store (service/people). Every use case and sync asks through identity_of.
    people: Callable[[str], Identity | None] | None = None
    # Where the web console is (KEYTURN_CONSOLE_URL), for answers that send people there; "" when not served.
    console_url: str = ""

    def identity_of(self, user_id: str) -> Identity | None:
        return (self.people if self.people is not None else self.catalog.identity_for)(user_id)

    def identity_still(self, user_id: str, identity_key: str) -> Identity | None:
        """The identity for `user_id` if it is still the person `identity_key` named, else None."""
        identity = self.identity_of(user_id)
        return identity if identity is not None and identity.key == identity_key else None

    def roles_for(self, user_id: str) -> list[Role]:
        """Roles this user may request: anyone with an identity may ask for any role."""
        return sorted(self.catalog.roles.values(), key=lambda r: r.id) if self.identity_of(user_id) else []

    def actor(self, user_id: str) -> Actor:
        return Actor(user_id=user_id, groups=self.groups_of(user_id), is_admin=user_id in self.catalog.admins)
