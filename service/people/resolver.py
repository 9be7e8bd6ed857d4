"""Who a Slack user is, with people found by email (opt-in: `settings.email_lookup`).

The catalogue always wins. Otherwise, with the setting on: Slack `users.info` -> the profile email -> the
Identity Store users with that email. Exactly one -> an `sso_user` who signs in with the configured
permission sets (pinned by `aws:userid` like any other). None, or two or more -> refused, never guessed.

Answers (found or refused) are remembered for `max_age`, in an LRU of `max_entries` people. An answer older
than `max_age` is never used: it is looked up again, and if Slack or AWS fails then, the person is refused
(fail closed), the old answer forgotten. Errors are not remembered: the next call asks again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service.catalog import Catalog
from service.catalog.email_lookup import EmailLookup
from service.core.identity import SESSION_NAME, Identity, IdentityKind
from service.people.directory import NotFound, slack_email, store_user_names

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Answer:
    at: datetime
    user_name: str | None  # None: refused (remembered as such)


class EmailResolver:
    """A `Context.people` hook: `resolver(slack_user_id) -> Identity | None`. Thread-safe."""

    def __init__(self, *, catalog: Callable[[], Catalog], slack: Any, identity_store: Callable[[str | None], Any],
                 team_ids: tuple[str, ...] = (), now: Callable[[], datetime] = _utcnow) -> None:
        self._catalog, self._slack, self._store_client = catalog, slack, identity_store
        self._team_ids, self._now = tuple(team_ids), now
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, _Answer] = OrderedDict()

    def __call__(self, user_id: str) -> Identity | None:
        catalog = self._catalog()
        known = catalog.identity_for(user_id)
        if known is not None or catalog.email_lookup is None or catalog.identity_center is None:
            return known
        config = catalog.email_lookup
        answer = self._fresh(user_id, config)
        if answer is None:
            answer = self._look_up(user_id, catalog)
            if answer is None:
                return None  # an error: refused, nothing remembered
            self._remember(user_id, answer, config)
        return self._identity(user_id, answer.user_name, catalog, config)

    def forget(self, user_id: str | None = None) -> None:
        """Drop one remembered answer (or all)."""
        with self._lock:
            if user_id is None:
                self._answers.clear()
            else:
                self._answers.pop(user_id, None)

    @property
    def remembered(self) -> int:
        """How many answers are held (not __len__: an empty resolver must stay truthy for `people or ...`)."""
        with self._lock:
            return len(self._answers)

    # ---- the cache ------------------------------------------------------------------------------
    def _fresh(self, user_id: str, config: EmailLookup) -> _Answer | None:
        now = self._now()
        with self._lock:
            answer = self._answers.get(user_id)
            if answer is None:
                return None
            if not answer.at <= now < answer.at + config.max_age:  # stale (or the clock went back)
                del self._answers[user_id]
                return None
            self._answers.move_to_end(user_id)
            return answer

    def _remember(self, user_id: str, answer: _Answer, config: EmailLookup) -> None:
        with self._lock:
            self._answers[user_id] = answer
            self._answers.move_to_end(user_id)
            while len(self._answers) > config.max_entries:
                self._answers.popitem(last=False)

    # ---- looking up -----------------------------------------------------------------------------
    def _look_up(self, user_id: str, catalog: Catalog) -> _Answer | None:
        at = self._now()
        center = catalog.identity_center
        if center is None:  # the catalogue requires it with email_lookup
            return None
        try:
            email = slack_email(self._slack, user_id, team_ids=self._team_ids)
            names = store_user_names(self._store_client(center.region), center.identity_store_id, email)
        except NotFound as exc:
            log.info("email lookup: refused", extra={"user": user_id, "reason": str(exc)})
            return _Answer(at, None)
        except Exception as exc:  # Slack or AWS failed: refuse, remember nothing, keep no older answer
            log.warning("email lookup: failed, refused", extra={"user": user_id, "error": type(exc).__name__})
            return None
        if len(names) != 1:
            log.warning("email lookup: ambiguous, refused" if names else "email lookup: no such person, refused",
                        extra={"user": user_id, "matches": len(names)})
            return _Answer(at, None)
        if not SESSION_NAME.fullmatch(names[0]):
            log.warning("email lookup: the user name cannot be a role session name, refused",
                        extra={"user": user_id})
            return _Answer(at, None)
        return _Answer(at, names[0])

    def _identity(self, user_id: str, user_name: str | None, catalog: Catalog,
                  config: EmailLookup) -> Identity | None:
        if user_name is None:
            return None
        folded = user_name.casefold()
        if any(i.session_name.casefold() == folded for i in catalog.identities.values()):
            # Two people with one session name could not be told apart by a pin or a session cut.
            log.warning("email lookup: the user name is a catalogue person's session name, refused",
                        extra={"user": user_id})
            return None
        now = self._now()
        with self._lock:
            others = [u for u, a in self._answers.items() if u != user_id and a.user_name is not None
                      and a.user_name.casefold() == folded and a.at <= now < a.at + config.max_age]
        if others:
            log.warning("email lookup: another Slack user resolves to the same person, refused",
                        extra={"user": user_id, "other": others[0]})
            return None
        return Identity(user_id, IdentityKind.SSO_USER, session_name=user_name, user_name=user_name,
                        roles=config.roles)
