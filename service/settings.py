"""One validated Settings object, read once from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from service.core.durations import DurationError, parse_duration

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_RESPONSE_ORIGINS = ("https://hooks.slack.com",)  # where Slack's response_urls point
DEFAULT_OIDC_ISSUER = "https://slack.com"  # Sign in with Slack: its discovery document is under this issuer
MIN_SIGNING_SECRET = 32  # Slack's signing secrets are 32 hexadecimal characters
MIN_TASK_KEY = 32
MIN_API_TOKEN = 20
SLACK_MODES = ("http", "socket")
# A value containing one of these was copied from an example, not generated (.env.example says "replace-me").
PLACEHOLDERS = ("replace-me", "replace_me", "replaceme", "change-me", "changeme", "change_me", "placeholder",
                "not-configured", "example", "<", ">")


class SettingsError(ValueError):
    """An environment variable with a value Keyturn cannot use."""


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///keyturn.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    catalog_path: Path = Path("config/catalog.example.yaml")
    slack_bot_token: str = field(default="", repr=False)
    slack_signing_secret: str = field(default="", repr=False)
    slack_api_url: str = DEFAULT_SLACK_API_URL
    sweep_interval: timedelta = timedelta(seconds=5)
    reconcile_interval: timedelta = timedelta(minutes=5)
    lock_timeout: timedelta = timedelta(seconds=30)
    sync_max_retries: int = 6
    api_tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # token -> Slack user id
    log_level: str = "INFO"
    # The one Slack workspace served; empty team and enterprise: what auth.test reports at start.
    slack_team_ids: tuple[str, ...] = ()
    slack_enterprise_id: str = ""
    slack_app_id: str = ""
    # Origins (scheme://host[:port]) a worker may answer on; a response_url elsewhere is never fetched.
    slack_response_origins: tuple[str, ...] = DEFAULT_RESPONSE_ORIGINS
    # HMAC key of queued interactions (web signs, worker verifies); Redis never holds it.
    task_signing_key: str = field(default="", repr=False)
    task_max_age: timedelta = timedelta(minutes=30)
    # The web console (service/console): served only when its address is set; Sign in with Slack (OpenID Connect).
    console_url: str = ""
    oidc_issuer: str = DEFAULT_OIDC_ISSUER
    oidc_client_id: str = ""
    oidc_client_secret: str = field(default="", repr=False)
    console_session_secret: str = field(default="", repr=False)
    console_session_lifetime: timedelta = timedelta(hours=8)
    # How Slack reaches Keyturn: "http" (POST /slack/events on the web) or "socket" (`keyturn socket` dials
    # out to Slack with the app-level token; nothing of Keyturn is reachable from the internet).
    slack_mode: str = "http"
    slack_app_token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read KEYTURN_* and the documented variables; raise SettingsError naming the bad one."""
        env = os.environ if env is None else env
        base = cls()

        def dur(name: str, default: timedelta) -> timedelta:
            raw = env.get(name)
            if not raw:
                return default
            try:
                return parse_duration(raw)
            except DurationError as exc:
                raise SettingsError(f"{name}: {exc}") from exc

        def integer(name: str, default: int) -> int:
            raw = env.get(name)
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError as exc:
                raise SettingsError(f"{name}: {raw!r} is not a whole number") from exc
            if value < 0:
                raise SettingsError(f"{name}: must not be negative")
            return value

        def ids(name: str) -> tuple[str, ...]:
            return tuple(i.strip() for i in (env.get(name) or "").split(",") if i.strip())

        api_url = env.get("SLACK_API_URL") or base.slack_api_url
        settings = cls(
            database_url=env.get("DATABASE_URL") or base.database_url,
            redis_url=env.get("REDIS_URL") or base.redis_url,
            catalog_path=Path(env.get("KEYTURN_CATALOG") or base.catalog_path),
            slack_bot_token=env.get("SLACK_BOT_TOKEN", ""),
            slack_signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            slack_api_url=api_url if api_url.endswith("/") else api_url + "/",
            sweep_interval=dur("KEYTURN_SWEEP_INTERVAL", base.sweep_interval),
            reconcile_interval=dur("KEYTURN_RECONCILE_INTERVAL", base.reconcile_interval),
            lock_timeout=dur("KEYTURN_LOCK_TIMEOUT", base.lock_timeout),
            sync_max_retries=integer("KEYTURN_SYNC_MAX_RETRIES", base.sync_max_retries),
            api_tokens=api_tokens(env.get("KEYTURN_API_TOKENS") or ""),
            log_level=(env.get("KEYTURN_LOG_LEVEL") or "INFO").upper(),
            slack_team_ids=ids("KEYTURN_SLACK_TEAM_ID"),
            slack_enterprise_id=(env.get("KEYTURN_SLACK_ENTERPRISE_ID") or "").strip(),
            slack_app_id=(env.get("KEYTURN_SLACK_APP_ID") or "").strip(),
            slack_response_origins=tuple(origin(o, "KEYTURN_SLACK_RESPONSE_HOSTS")
                                         for o in ids("KEYTURN_SLACK_RESPONSE_HOSTS")) or DEFAULT_RESPONSE_ORIGINS,
            task_signing_key=env.get("KEYTURN_TASK_SIGNING_KEY", ""),
            task_max_age=dur("KEYTURN_TASK_MAX_AGE", base.task_max_age),
            console_url=(env.get("KEYTURN_CONSOLE_URL") or "").strip().rstrip("/"),
            oidc_issuer=(env.get("KEYTURN_OIDC_ISSUER") or base.oidc_issuer).strip().rstrip("/"),
            oidc_client_id=(env.get("SLACK_CLIENT_ID") or "").strip(),
            oidc_client_secret=env.get("SLACK_CLIENT_SECRET", ""),
            console_session_secret=env.get("KEYTURN_CONSOLE_SESSION_SECRET", ""),
            console_session_lifetime=dur("KEYTURN_CONSOLE_SESSION_LIFETIME", base.console_session_lifetime),
            slack_mode=(env.get("KEYTURN_SLACK_MODE") or base.slack_mode).strip().lower(),
            slack_app_token=env.get("SLACK_APP_TOKEN", ""),
        )
        if settings.slack_mode not in SLACK_MODES:
            raise SettingsError(f"KEYTURN_SLACK_MODE: {settings.slack_mode!r} is neither http nor socket")
        if not timedelta(seconds=10) <= settings.task_max_age <= timedelta(hours=12):
            # Above half a day a sealed task could outlive the record of its nonce (processed_events keeps
            # at least a day), and then be replayed.
            raise SettingsError("KEYTURN_TASK_MAX_AGE: must be between 10s and 12h")
        return settings

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def api_tokens(raw: str) -> dict[str, str]:
    """KEYTURN_API_TOKENS (U123:token,U456:token) as token -> user; a short, copied or repeated token is refused
    (a repeated one would silently belong to whoever is named last). Messages never quote a token."""
    tokens: dict[str, str] = {}
    for n, pair in enumerate(filter(None, (p.strip() for p in raw.split(","))), start=1):
        user, sep, token = (part.strip() for part in pair.partition(":"))
        if not sep or not user or not token:
            raise SettingsError("KEYTURN_API_TOKENS: write it as U123:token,U456:token")
        problem = secret_problem(token, MIN_API_TOKEN)
        if problem:
            raise SettingsError(f"KEYTURN_API_TOKENS: the token of entry {n} ({user}) {problem}")
        if token in tokens:
            raise SettingsError(f"KEYTURN_API_TOKENS: {tokens[token]} and {user} are given the same token; "
                                "give every user a token of their own")
        tokens[token] = user
    return tokens


def secret_problem(value: str, min_length: int) -> str | None:
    """Why a secret cannot be used (empty, copied from an example, too short), or None."""
    if not value:
        return "is not set"
    if any(mark in value.lower() for mark in PLACEHOLDERS):
        return "is a placeholder copied from an example"
    if len(value) < min_length or len(set(value)) < 8:
        return f"is too short to be a secret (at least {min_length} random characters)"
    if any(c.isspace() for c in value):
        return "contains white space"
    return None


def slack_problems(settings: Settings) -> list[str]:
    """What stops the web from serving Slack with these settings, one line each naming the variable.

    Serving Slack needs a real signing secret (in Socket Mode an app-level token instead), a bot token and a
    task signing key; with none of them set the web serves no Slack at all (the REST API and the CLI still work)."""
    problems = []
    secret = secret_problem(settings.slack_signing_secret, MIN_SIGNING_SECRET)
    if settings.slack_mode == "socket":  # nothing is signed over the socket: the app-level token opens it
        problems += app_token_problems(settings.slack_app_token)
    elif secret:
        problems.append(f"SLACK_SIGNING_SECRET {secret}: set it to the Signing Secret of the Slack app "
                        "(Basic Information > App Credentials); every request to /slack/events is verified with it")
    token = settings.slack_bot_token
    if not token:
        problems.append("SLACK_BOT_TOKEN is not set: set it to the app's Bot User OAuth Token (xoxb-...)")
    elif not re.fullmatch(r"xoxb-[A-Za-z0-9-]+", token) or any(m in token.lower() for m in PLACEHOLDERS):
        problems.append("SLACK_BOT_TOKEN is not a bot token: set it to the app's Bot User OAuth Token "
                        "(OAuth & Permissions, xoxb-...), not a placeholder")
    key = secret_problem(settings.task_signing_key, MIN_TASK_KEY)
    if key:
        problems.append(f"KEYTURN_TASK_SIGNING_KEY {key}: set the same random key on web and workers "
                        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`); "
                        "queued Slack interactions are signed with it")
    return problems


def app_token_problems(token: str) -> list[str]:
    """What is wrong with SLACK_APP_TOKEN for Socket Mode (empty list: nothing)."""
    if not token:
        return ["SLACK_APP_TOKEN is not set: KEYTURN_SLACK_MODE=socket needs the app's App-Level Token "
                "(Basic Information > App-Level Tokens, scope connections:write, xapp-...)"]
    if not re.fullmatch(r"xapp-[A-Za-z0-9-]{20,}", token) or any(m in token.lower() for m in PLACEHOLDERS):
        return ["SLACK_APP_TOKEN is not an app-level token: set it to the App-Level Token (Basic Information > "
                "App-Level Tokens, scope connections:write, xapp-...), not a bot token or a placeholder"]
    return []


def console_problems(settings: Settings) -> list[str]:
    """What stops the web from serving the console (KEYTURN_CONSOLE_URL set), one line each naming the variable."""
    problems = []
    for name, url in (("KEYTURN_CONSOLE_URL", settings.console_url), ("KEYTURN_OIDC_ISSUER", settings.oidc_issuer)):
        parts = urlsplit(url)
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if (parts.scheme != "https" and not (parts.scheme == "http" and loopback)) or parts.query or parts.username:
            problems.append(f"{name} must be an https:// address (http only on loopback), not {url!r}")
    if not settings.oidc_client_id or any(m in settings.oidc_client_id.lower() for m in PLACEHOLDERS):
        problems.append("SLACK_CLIENT_ID is not set: set it to the Slack app's Client ID (Basic Information > "
                        "App Credentials); the console signs people in with Slack")
    secret = secret_problem(settings.oidc_client_secret, MIN_SIGNING_SECRET)
    if secret:
        problems.append(f"SLACK_CLIENT_SECRET {secret}: set it to the Slack app's Client Secret")
    session = secret_problem(settings.console_session_secret, MIN_TASK_KEY)
    if session:
        problems.append(f"KEYTURN_CONSOLE_SESSION_SECRET {session}: set a random key (e.g. `python -c 'import "
                        "secrets; print(secrets.token_urlsafe(32))'`); the console's session cookies are signed "
                        "with it")
    if not (settings.slack_team_ids or settings.slack_enterprise_id or settings.slack_bot_token):
        problems.append("KEYTURN_SLACK_TEAM_ID (or KEYTURN_SLACK_ENTERPRISE_ID, or SLACK_BOT_TOKEN for auth.test) "
                        "is not set: the console must know which workspace may sign in")
    if not timedelta(minutes=5) <= settings.console_session_lifetime <= timedelta(hours=12):
        problems.append("KEYTURN_CONSOLE_SESSION_LIFETIME must be between 5m and 12h")
    return problems


def serves_slack(settings: Settings) -> bool:
    """Whether the web mounts /slack/events: it does as soon as either Slack secret is set (and then checks all)."""
    return bool(settings.slack_signing_secret or settings.slack_bot_token or settings.slack_app_token)


def origin(value: str, name: str) -> str:
    """scheme://host[:port], lower case; a bare host means https."""
    parts = urlsplit(value if "://" in value else f"https://{value}")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.path not in ("", "/") \
            or parts.username or parts.password or parts.query:
        raise SettingsError(f"{name}: {value!r} is not an origin (https://host[:port])")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"
