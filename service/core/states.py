"""Request and grant states and the transitions allowed between them."""

from __future__ import annotations

from enum import StrEnum


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class GrantState(StrEnum):
    # approved, the IAM write not yet verified
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    # ended in the database (expiry or revoke); waiting for sync to verify removal
    ENDING = "ending"
    EXPIRED = "expired"
    REVOKED = "revoked"
    FAILED = "failed"
    REVOCATION_FAILED = "revocation_failed"


class EndReason(StrEnum):
    EXPIRED = "expired"
    REVOKED = "revoked"


REQUEST_TRANSITIONS: dict[RequestState, frozenset[RequestState]] = {
    RequestState.PENDING: frozenset(
        {RequestState.APPROVED, RequestState.DENIED, RequestState.CANCELLED, RequestState.TIMED_OUT}
    ),
}

GRANT_TRANSITIONS: dict[GrantState, frozenset[GrantState]] = {
    GrantState.PROVISIONING: frozenset(
        {GrantState.ACTIVE, GrantState.FAILED, GrantState.ENDING, GrantState.EXPIRED}
    ),
    GrantState.ACTIVE: frozenset({GrantState.ENDING}),
    GrantState.ENDING: frozenset({GrantState.EXPIRED, GrantState.REVOKED, GrantState.REVOCATION_FAILED}),
    GrantState.REVOCATION_FAILED: frozenset({GrantState.EXPIRED, GrantState.REVOKED}),
}

# Grants whose access is wanted in IAM (while their expiry is in the future).
LIVE_GRANT_STATES = frozenset({GrantState.PROVISIONING, GrantState.ACTIVE})
# Grants whose removal from IAM is still to be verified.
ENDING_GRANT_STATES = frozenset({GrantState.ENDING, GrantState.REVOCATION_FAILED})
TERMINAL_GRANT_STATES = frozenset(
    {GrantState.EXPIRED, GrantState.REVOKED, GrantState.FAILED}
)


def can_request_move(src: RequestState, dst: RequestState) -> bool:
    return dst in REQUEST_TRANSITIONS.get(src, frozenset())


def can_grant_move(src: GrantState, dst: GrantState) -> bool:
    return dst in GRANT_TRANSITIONS.get(src, frozenset())


def terminal_state_for(reason: EndReason) -> GrantState:
    """Where an ending grant lands once its removal is verified."""
    return GrantState.EXPIRED if reason is EndReason.EXPIRED else GrantState.REVOKED
