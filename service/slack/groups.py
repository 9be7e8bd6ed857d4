"""Slack user-group membership for approver checks, cached briefly (Slack rate-limits the call).

A member list is used as fresh for `ttl` seconds. When Slack cannot be asked, the last list Slack gave
is still used, but only until it is `max_stale` seconds old: after that nobody is an approver through the
group until Slack answers again (fail closed), so someone removed from the group cannot approve for longer
than `max_stale` however long Slack is unreachable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TTL = 60.0
DEFAULT_MAX_STALE = 300.0


class UserGroups:
    """`groups_of(user)`: which of the catalogue's approver groups the user belongs to right now."""

    def __init__(self, client: Any, group_ids: frozenset[str], ttl: float = DEFAULT_TTL,
                 max_stale: float = DEFAULT_MAX_STALE, clock: Callable[[], float] = time.monotonic):
        self.client, self.group_ids, self.ttl = client, group_ids, ttl
        self.max_stale, self.clock = max(max_stale, ttl), clock
        self._lock = threading.Lock()
        self._members: dict[str, frozenset[str]] = {}
        self._fetched: dict[str, float] = {}

    def _cached(self, group: str, max_age: float) -> frozenset[str] | None:
        with self._lock:
            fetched = self._fetched.get(group)
            if fetched is not None and self.clock() - fetched < max_age:
                return self._members[group]
        return None

    def _members_of(self, group: str) -> frozenset[str]:
        fresh = self._cached(group, self.ttl)
        if fresh is not None:
            return fresh
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group).get("users", []))
        except Exception:
            stale = self._cached(group, self.max_stale)
            if stale is None:
                # Fail closed: nobody is an approver through this group until Slack answers again.
                log.warning("could not read Slack user group %s; no member list younger than %.0fs, so "
                            "nobody approves through it", group, self.max_stale, exc_info=True)
                return frozenset()
            log.warning("could not read Slack user group %s; using its member list from under %.0fs ago",
                        group, self.max_stale, exc_info=True)
            return stale
        with self._lock:
            self._members[group], self._fetched[group] = users, self.clock()
        return users

    def groups_of(self, user_id: str) -> frozenset[str]:
        return frozenset(g for g in self.group_ids if user_id in self._members_of(g))
