"""App Home: refreshed by a worker whenever the user opens it (Slack retries are de-duplicated)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from slack_bolt import App
from sqlalchemy.exc import IntegrityError

from service.operations.context import Context
from service.store.models import ProcessedEvent


def register(app: App) -> None:
    app.event("app_home_opened")(home_opened)


def first_delivery(ctx: Context, event_id: str | None) -> bool:
    """True the first time Slack delivers this event id; retries of it return False."""
    if not event_id:
        return True
    try:
        with ctx.store.begin() as session:
            session.add(ProcessedEvent(event_id=event_id, at=datetime.now(UTC)))
    except IntegrityError:
        return False
    return True


def home_opened(body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
    """Queue a fresh App Home for the user."""
    ctx: Context = context["keyturn"]
    if event.get("tab", "home") != "home" or not first_delivery(ctx, body.get("event_id")):
        return
    ctx.dispatch.notify("home.refresh", user_id=event["user"])
