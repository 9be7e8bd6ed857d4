"""Which Slack traffic Keyturn trusts: its own workspace, and answers only on Slack's own hosts. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Workspace:
    """The one Slack workspace served: its team id(s), its Enterprise Grid org, the Slack app.

    A request is served when it comes through the app (when its id is known) and either from the org (any of
    its workspaces: an Enterprise Grid approver may click from another team of the same org) or from one of the
    teams. Empty teams and no enterprise admit nothing.
    """

    team_ids: frozenset[str] = frozenset()
    enterprise_id: str = ""
    app_id: str = ""

    def refusal(self, *, team_id: str | None, actor_team_id: str | None, enterprise_id: str | None,
                app_id: str | None) -> str | None:
        """Why a request with these ids is not served (a short reason for the log), or None."""
        if self.app_id and app_id != self.app_id:
            return f"app {app_id or '-'} is not {self.app_id}"
        if self.enterprise_id and enterprise_id == self.enterprise_id:
            return None
        if not team_id or team_id not in self.team_ids:
            return f"team {team_id or '-'} (enterprise {enterprise_id or '-'}) is not served"
        if actor_team_id and actor_team_id not in self.team_ids:
            return f"the user's team {actor_team_id} is not served"
        return None


def _origin(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None or not parts.hostname:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def response_url_allowed(url: object, origins: tuple[str, ...]) -> bool:
    """Whether `url` is on one of the origins (scheme://host[:port]): no user info, no look-alike hosts."""
    if not isinstance(url, str) or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    mine = _origin(url)
    return mine is not None and any(mine == _origin(o) for o in origins)
