"""Slack user-group membership for approver checks, cached briefly (Slack rate-limits the call)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class UserGroups:
    """`groups_of(user)`: which of the catalogue's approver groups the user belongs to right now."""

    def __init__(self, client: Any, group_ids: frozenset[str], ttl: float = 60.0):
        self.client, self.group_ids, self.ttl = client, group_ids, ttl
        self._lock = threading.Lock()
        self._members: dict[str, frozenset[str]] = {}
        self._fetched: dict[str, float] = {}

    def _members_of(self, group: str) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._fetched.get(group, -1e9) < self.ttl:
                return self._members[group]
        try:
            users = frozenset(self.client.usergroups_users_list(usergroup=group).get("users", []))
        except Exception:
            # Fail closed: an unreachable Slack means nobody is an approver through this group.
            log.warning("could not read Slack user group %s", group, exc_info=True)
            return self._members.get(group, frozenset()) if group in self._fetched else frozenset()
        with self._lock:
            self._members[group], self._fetched[group] = users, time.monotonic()
        return users

    def groups_of(self, user_id: str) -> frozenset[str]:
        return frozenset(g for g in self.group_ids if user_id in self._members_of(g))
