"""Who may read what through the REST API: their own requests and grants, those of the roles they
approve, and everything for an admin. The audit log is for admins only.

The scope is worked out per call from the catalogue (and Slack user groups, as for a vote), so a person
removed as an approver stops seeing that role's requests at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_

from service.core.rules import is_approver
from service.operations.context import Context


@dataclass(frozen=True)
class Scope:
    user: str
    admin: bool
    roles: frozenset[str]  # the roles whose requests and grants this user approves

    def where(self, stmt: Select[Any], model: Any) -> Select[Any]:
        """`stmt` narrowed to the rows of `model` (requests or grants) this user may read."""
        if self.admin:
            return stmt
        return stmt.where(or_(model.requester == self.user, model.role_id.in_(sorted(self.roles))))

    def sees(self, row: Any) -> bool:
        return self.admin or row.requester == self.user or row.role_id in self.roles


def scope_of(ctx: Context, user: str) -> Scope:
    actor = ctx.actor(user)
    roles = frozenset(role.id for role in ctx.catalog.roles.values() if is_approver(role.rules(), actor))
    return Scope(user=user, admin=actor.is_admin, roles=roles)
