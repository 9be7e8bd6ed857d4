"""Who may request, approve, deny, cancel and revoke: frozen values in, a decision with a reason out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from service.core.states import GrantState, RequestState


class Reason(StrEnum):
    OK = "ok"
    # filing a request
    UNKNOWN_ROLE = "unknown_role"
    NO_PRINCIPAL = "no_principal"
    DURATION_TOO_LONG = "duration_too_long"
    DURATION_NOT_POSITIVE = "duration_not_positive"
    REASON_REQUIRED = "reason_required"
    TOO_MANY_PENDING = "too_many_pending"
    # deciding
    NOT_PENDING = "not_pending"
    REQUEST_EXPIRED = "request_expired"
    NOT_AN_APPROVER = "not_an_approver"
    SELF_APPROVAL = "self_approval"
    BREAK_GLASS_NEEDS_REASON = "break_glass_needs_reason"
    ALREADY_VOTED = "already_voted"
    WRONG_TEAM = "wrong_team"
    SECURITY_KEY_REQUIRED = "security_key_required"
    # cancelling / revoking
    NOT_REQUESTER = "not_requester"
    NOT_ALLOWED_TO_REVOKE = "not_allowed_to_revoke"
    NOT_REVOCABLE = "not_revocable"
    UNSUPPORTED_PRINCIPAL = "unsupported_principal"
    # the requester's identity when the approval lands
    REQUESTER_UNMAPPED = "requester_unmapped"
    IDENTITY_CHANGED = "identity_changed"


MESSAGES: dict[Reason, str] = {
    Reason.UNKNOWN_ROLE: "There is no such role in the catalogue.",
    Reason.NO_PRINCIPAL: "You have no AWS principal mapped in the catalogue; ask an admin to add one.",
    Reason.DURATION_TOO_LONG: "That is longer than this role allows.",
    Reason.DURATION_NOT_POSITIVE: "The duration must be longer than zero.",
    Reason.REASON_REQUIRED: "This role needs a reason.",
    Reason.TOO_MANY_PENDING: "You have too many requests waiting for approval; cancel one or wait for a decision.",
    Reason.NOT_PENDING: "This request has already been decided.",
    Reason.REQUEST_EXPIRED: "This request waited longer than requests may wait, so it has timed out; file it again.",
    Reason.NOT_AN_APPROVER: "You are not an approver for this role.",
    Reason.SELF_APPROVAL: "You cannot approve your own request.",
    Reason.BREAK_GLASS_NEEDS_REASON: "Break-glass self-approval needs a reason.",
    Reason.ALREADY_VOTED: "You have already approved this request.",
    Reason.WRONG_TEAM: "This action came from a different Slack workspace.",
    Reason.SECURITY_KEY_REQUIRED: "Approvals of this role must be confirmed with a security key in Keyturn's "
                                  "console.",
    Reason.NOT_REQUESTER: "Only the requester can do that.",
    Reason.NOT_ALLOWED_TO_REVOKE: "Only the requester, the role's approvers or an admin can end this access.",
    Reason.NOT_REVOCABLE: "This access has already ended.",
    Reason.UNSUPPORTED_PRINCIPAL: "Your AWS principal cannot be given this role this way; ask an admin.",
    Reason.REQUESTER_UNMAPPED: "The requester is no longer in the catalogue, so this request cannot be approved.",
    Reason.IDENTITY_CHANGED: "The requester's AWS identity changed in the catalogue since they filed this request; "
                             "they need to file it again.",
}


class Vote(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class Outcome(StrEnum):
    REFUSED = "refused"
    RECORDED = "recorded"  # an approval counted, quorum not yet reached
    APPROVED = "approved"
    DENIED = "denied"


@dataclass(frozen=True)
class RoleRules:
    """What the core needs to know about a catalogue role."""

    role_id: str
    approvers: frozenset[str]  # Slack user ids
    approver_groups: frozenset[str] = frozenset()  # Slack user-group ids
    min_approvals: int = 1
    auto_approve: bool = False
    allow_self_approval: bool = False
    require_reason: bool = False
    default_duration: timedelta = timedelta(hours=1)
    max_duration: timedelta = timedelta(hours=4)
    # Every approval of the role, or only the requester's own (break-glass), counts only when confirmed with a
    # security key (a WebAuthn assertion with user verification, checked by the console).
    require_security_key: bool = False
    break_glass_requires_security_key: bool = False


@dataclass(frozen=True)
class Actor:
    """Who acts, as Slack's signed payload (or the CLI's --as) says."""

    user_id: str
    groups: frozenset[str] = frozenset()  # Slack user groups the actor belongs to
    is_admin: bool = False


@dataclass(frozen=True)
class RequestView:
    state: RequestState
    requester: str
    approvals: frozenset[str] = frozenset()  # user ids who approved so far
    # Whether the catalogue still maps the requester to the identity they filed as (identity_check).
    identity: Reason = Reason.OK
    # Past its deadline (filed + request_timeout) at the moment of the click: decided by the deadline
    # itself, not by whether the sweeper has run yet.
    past_deadline: bool = False


def identity_check(filed: str | None, current: str | None) -> Reason:
    """Access goes to the person approved: the identity filed must still be the catalogue's, when the
    approval lands (a requester removed or remapped since is refused, never given the old ARN)."""
    if current is None:
        return Reason.REQUESTER_UNMAPPED
    if filed != current:
        return Reason.IDENTITY_CHANGED
    return Reason.OK


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: Reason = Reason.OK
    break_glass: bool = False
    approvals: frozenset[str] = field(default_factory=frozenset)

    @property
    def refused(self) -> bool:
        return self.outcome is Outcome.REFUSED


@dataclass(frozen=True)
class FilingCheck:
    reason: Reason
    duration: timedelta | None = None

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK


def is_approver(rules: RoleRules, actor: Actor) -> bool:
    return actor.user_id in rules.approvers or bool(actor.groups & rules.approver_groups)


def security_key_needed(rules: RoleRules, requester: str, actor: Actor, vote: Vote) -> bool:
    """Whether this vote counts only with a confirmed security key: an approval of a role that asks for one,
    or a break-glass self-approval where break-glass asks for one. A deny never needs one (it grants nothing)."""
    if vote is not Vote.APPROVE:
        return False
    return rules.require_security_key or (actor.user_id == requester and rules.break_glass_requires_security_key)


MAX_PENDING_PER_PERSON = 5


def check_filing(
    rules: RoleRules, *, duration: timedelta | None, reason: str | None, has_principal: bool,
    pending: int = 0, max_pending: int = MAX_PENDING_PER_PERSON,
) -> FilingCheck:
    """May this request be filed, and for how long. `pending`: the requester's requests still waiting."""
    if not has_principal:
        return FilingCheck(Reason.NO_PRINCIPAL)
    if pending >= max_pending:
        return FilingCheck(Reason.TOO_MANY_PENDING)
    wanted = rules.default_duration if duration is None else duration
    if wanted <= timedelta(0):
        return FilingCheck(Reason.DURATION_NOT_POSITIVE)
    if wanted > rules.max_duration:
        return FilingCheck(Reason.DURATION_TOO_LONG)
    if rules.require_reason and not (reason or "").strip():
        return FilingCheck(Reason.REASON_REQUIRED)
    return FilingCheck(Reason.OK, wanted)


def decide_vote(
    rules: RoleRules, request: RequestView, actor: Actor, vote: Vote, *, reason: str | None = None,
    key_confirmed: bool = False,
) -> Decision:
    """One approver's click on a request: refused, counted, or the request's decision. `key_confirmed`: the
    vote carries a verified security-key assertion of the actor's (security_key_needed)."""
    key_missing = security_key_needed(rules, request.requester, actor, vote) and not key_confirmed
    if request.state is not RequestState.PENDING:
        return Decision(Outcome.REFUSED, Reason.NOT_PENDING, approvals=request.approvals)
    if request.past_deadline:
        return Decision(Outcome.REFUSED, Reason.REQUEST_EXPIRED, approvals=request.approvals)
    if not is_approver(rules, actor):
        return Decision(Outcome.REFUSED, Reason.NOT_AN_APPROVER, approvals=request.approvals)
    self_vote = actor.user_id == request.requester
    break_glass = False
    if self_vote and vote is Vote.APPROVE:
        if not rules.allow_self_approval:
            return Decision(Outcome.REFUSED, Reason.SELF_APPROVAL, approvals=request.approvals)
        if key_missing:  # before the reason: the confirm page asks for both
            return Decision(Outcome.REFUSED, Reason.SECURITY_KEY_REQUIRED, approvals=request.approvals)
        if not (reason or "").strip():
            return Decision(Outcome.REFUSED, Reason.BREAK_GLASS_NEEDS_REASON, approvals=request.approvals)
        break_glass = True
    if vote is Vote.DENY:
        return Decision(Outcome.DENIED, approvals=request.approvals)
    if request.identity is not Reason.OK:
        return Decision(Outcome.REFUSED, request.identity, approvals=request.approvals)
    if actor.user_id in request.approvals:
        return Decision(Outcome.REFUSED, Reason.ALREADY_VOTED, approvals=request.approvals)
    if key_missing:
        return Decision(Outcome.REFUSED, Reason.SECURITY_KEY_REQUIRED, approvals=request.approvals)
    approvals = request.approvals | {actor.user_id}
    # Break-glass is a deliberate override by the requester: it decides alone.
    if break_glass or len(approvals) >= max(1, rules.min_approvals):
        return Decision(Outcome.APPROVED, break_glass=break_glass, approvals=approvals)
    return Decision(Outcome.RECORDED, approvals=approvals)


def decide_cancel(request: RequestView, actor: Actor) -> Decision:
    """The requester withdraws a pending request."""
    if request.state is not RequestState.PENDING:
        return Decision(Outcome.REFUSED, Reason.NOT_PENDING)
    if actor.user_id != request.requester and not actor.is_admin:
        return Decision(Outcome.REFUSED, Reason.NOT_REQUESTER)
    return Decision(Outcome.DENIED)


def may_revoke(rules: RoleRules, grant_state: GrantState, grant_requester: str, actor: Actor) -> Reason:
    """Ending access early: the requester ("I'm done"), an approver of the role, or an admin."""
    if grant_state not in (GrantState.PROVISIONING, GrantState.ACTIVE):
        return Reason.NOT_REVOCABLE
    if actor.user_id == grant_requester or actor.is_admin or is_approver(rules, actor):
        return Reason.OK
    return Reason.NOT_ALLOWED_TO_REVOKE


def may_extend(grant_state: GrantState, grant_requester: str, actor: Actor) -> Reason:
    """Asking for more time: only the grant's requester, and only while the access is live."""
    if grant_state not in (GrantState.PROVISIONING, GrantState.ACTIVE):
        return Reason.NOT_REVOCABLE
    if actor.user_id != grant_requester:
        return Reason.NOT_REQUESTER
    return Reason.OK
