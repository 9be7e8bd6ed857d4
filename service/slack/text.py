"""Making user text safe for Slack mrkdwn and formatting times for each reader."""

from __future__ import annotations

from datetime import datetime

from service.core.durations import format_duration


def esc(text: str | None) -> str:
    """Escape &, < and >: no <!channel>, <@U…> or links can be injected through a reason."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """Shown in each reader's own timezone by Slack; the fallback is UTC."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{fmt}|{moment:%Y-%m-%d %H:%M} UTC>"


def seconds(n: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=n))
