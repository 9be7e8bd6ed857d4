"""Making user text safe for Slack mrkdwn and formatting times for each reader."""

from __future__ import annotations

from datetime import datetime

from service.core.durations import format_duration


def esc(text: str | None) -> str:
    """Escape &, < and >: no <!channel>, <@U…> or links can be injected through a reason."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fold(text: str | None) -> str:
    """User text on one line, escaped: line breaks (any of Python's, U+2028 too) become spaces, so it cannot
    start a line of its own that passes for one of Keyturn's fields ("*Duration:* 15m", "Approved by")."""
    return " ".join(esc(text).split())


def quote(text: str | None, max_lines: int = 15) -> str:
    """User text as a Slack block quote, escaped: every line of it starts with `> `, so however many lines
    it has, none can pass for one of Keyturn's own; blank lines go, and at most `max_lines` are kept."""
    lines = [" ".join(line.split()) for line in esc(text).splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], "…"]
    return "\n".join(f"> {line}" for line in lines)


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """Shown in each reader's own timezone by Slack; the fallback is UTC."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{fmt}|{moment:%Y-%m-%d %H:%M} UTC>"


def seconds(n: int) -> str:
    from datetime import timedelta

    return format_duration(timedelta(seconds=n))
