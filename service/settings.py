"""One validated Settings object, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from service.core.durations import DurationError, parse_duration

DEFAULT_SLACK_API_URL = "https://slack.com/api/"


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

        tokens: dict[str, str] = {}
        for pair in filter(None, (env.get("KEYTURN_API_TOKENS") or "").split(",")):
            user, sep, token = pair.partition(":")
            if not sep or not user.strip() or not token.strip():
                raise SettingsError("KEYTURN_API_TOKENS: write it as U123:token,U456:token")
            tokens[token.strip()] = user.strip()
        api_url = env.get("SLACK_API_URL") or base.slack_api_url
        return cls(
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
            api_tokens=tokens,
            log_level=(env.get("KEYTURN_LOG_LEVEL") or "INFO").upper(),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
