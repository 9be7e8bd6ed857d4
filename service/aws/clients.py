"""IAM clients per account: the service's own credentials, or the account's manager role."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)


class AwsClients:
    """Builds and caches IAM clients; assumes an account's manager role when the catalogue names one."""

    def __init__(self, session: Any | None = None, manager_roles: dict[str, str] | None = None,
                 config: Config = BOTO_CONFIG):
        self._session = session or boto3.session.Session()
        self._manager_roles = dict(manager_roles or {})
        self._config = config
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Any, datetime | None]] = {}
        self._regional: dict[tuple[str, str | None], Any] = {}

    def iam(self, account: str) -> Any:
        """An IAM client acting in `account`."""
        with self._lock:
            cached = self._cache.get(account)
            if cached and (cached[1] is None or cached[1] - datetime.now(UTC) > timedelta(minutes=5)):
                return cached[0]
            client, expires = self._build(account)
            self._cache[account] = (client, expires)
            return client

    def sso_admin(self, region: str | None = None) -> Any:
        """An IAM Identity Center (sso-admin) client in the instance's region (None: the default region)."""
        return self._regional_client("sso-admin", region)

    def identitystore(self, region: str | None = None) -> Any:
        """An Identity Store client in the instance's region (None: the default region)."""
        return self._regional_client("identitystore", region)

    def _regional_client(self, service: str, region: str | None) -> Any:
        # Identity Center lives in one region of the account that runs Keyturn (its own credentials).
        with self._lock:
            key = (service, region)
            if key not in self._regional:
                self._regional[key] = self._session.client(service, region_name=region, config=self._config)
            return self._regional[key]

    def sts(self) -> Any:
        return self._session.client("sts", config=self._config)

    def _build(self, account: str) -> tuple[Any, datetime | None]:
        role_arn = self._manager_roles.get(account)
        if not role_arn:
            return self._session.client("iam", config=self._config), None
        creds = self.sts().assume_role(RoleArn=role_arn, RoleSessionName="keyturn-manager")["Credentials"]
        client = self._session.client(
            "iam",
            config=self._config,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        expires = creds["Expiration"]
        if isinstance(expires, datetime) and expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return client, expires
