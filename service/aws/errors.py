"""How AWS errors are classified: gone, over a limit, retryable or permanent."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

TRANSIENT_CODES = frozenset(
    {"Throttling", "ThrottlingException", "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure",
     "InternalError", "ServiceFailure", "ConcurrentModification", "ConcurrentModificationException",
     "RequestTimeout", "SlowDown", "503", "500", "502", "504"}
)


class TargetGone(Exception):
    """The role, group or user behind a target does not exist (any more)."""


class LimitExceeded(Exception):
    """Writing would break an AWS quota that moto does not enforce; nothing was written."""


class SyncConflict(Exception):
    """The document read back does not match what was written (yet): try again."""


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err: Any = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code or str(status or "")
    return type(exc).__name__


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and error_code(exc) in ("NoSuchEntity", "NoSuchEntityException", "404")


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: throttling, 5xx, connection trouble, a read-back that lags the write."""
    if isinstance(exc, SyncConflict | BotoCoreError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in TRANSIENT_CODES or int(status) >= 500
    return False
