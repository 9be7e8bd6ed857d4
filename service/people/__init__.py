"""Who a Slack user is in AWS, beyond the catalogue: opt-in, people found by their Slack email
(`settings.email_lookup`). Plugged into `Context.people` at the composition root."""

from __future__ import annotations

from typing import Any

from service.operations.context import Context
from service.people.resolver import EmailResolver
from service.settings import Settings
from service.slack.web_client import make_web_client

__all__ = ["EmailResolver", "people_for"]


def people_for(ctx: Context, *, settings: Settings, clients: Any) -> EmailResolver | None:
    """The resolver for `ctx` when its catalogue turns email lookup on, else None (the catalogue alone)."""
    if ctx.catalog.email_lookup is None:
        return None
    return EmailResolver(catalog=lambda: ctx.catalog, slack=make_web_client(settings),
                         identity_store=clients.identitystore, team_ids=settings.slack_team_ids)
