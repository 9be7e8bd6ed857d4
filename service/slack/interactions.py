"""Slack work acknowledged at once and carried out by a worker: filing a request, listing, approving.

The web checks the signature, parses the text and queues the interaction, so Slack's acknowledgement never
waits on the database (bench/RESULTS.md, benchmark 1). A worker runs the use case, where the core's guards
apply once, and answers on the interaction's response_url. A refusal is answered; any other failure raises
so the task retries: filing is idempotent on Slack's trigger id and a decision is taken at most once per
approver, so a redelivered task neither files twice nor votes twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from slack_sdk.webhook import WebhookClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from service.core.durations import DurationError
from service.core.rules import Reason, Vote
from service.core.sealing import seal_refusal
from service.core.slack_trust import response_url_allowed
from service.core.states import LIVE_GRANT_STATES, RequestState
from service.operations.context import Context, NotFound, Refused
from service.operations.decide_request import decide_request
from service.operations.request_access import request_access
from service.settings import DEFAULT_RESPONSE_ORIGINS
from service.slack.text import esc, seconds, slack_date
from service.store.models import AccessRequest, Grant, ProcessedEvent

log = logging.getLogger(__name__)

INTERACTION_TASK = "keyturn.slack_interaction"

# answer(text, replace): replace=True swaps the interaction's placeholder ("Filing…") for the answer;
# False adds an ephemeral message (never replace an approvers' message with a refusal).
Answer = Callable[[str, bool], None]


class NotQueued(Exception):
    """The queue could not take the interaction: nothing was started, and the user is told so at once."""


def user_message(error: BaseException) -> str | None:
    """What to tell the user about a domain error; None for an unexpected one."""
    if isinstance(error, Refused | NotFound | DurationError | NotQueued):
        return str(error)
    return None


def unexpected(error: BaseException, where: str) -> str:
    """Log an unexpected failure under a short id, and the message that quotes it."""
    error_id = uuid.uuid4().hex[:8]
    log.error("%s failed (error id %s)", where, error_id, exc_info=error)
    return f"Something went wrong (error id `{error_id}`). Keyturn's operators can look it up."


def queue(ctx: Context, kind: str, **payload: Any) -> None:
    """Hand an interaction to the workers, or raise NotQueued."""
    try:
        ctx.dispatch.interact(kind, payload)
    except Exception as exc:
        log.exception("could not queue a slack interaction", extra={"kind": kind})
        raise NotQueued("Keyturn could not queue this (its work queue did not answer), so it has most likely "
                        "not been done. Check `/access list` in a minute before trying again.") from exc


def run_queued(ctx: Context, kind: str, payload: dict[str, Any], sealed: object, answer: Answer, *, key: str,
               max_age: timedelta) -> str | None:
    """Carry out a queued interaction whose seal holds and which has not been carried out before; otherwise
    nothing is done, nobody is answered (the message did not come from the web), and the reason is logged and
    returned. A seal's nonce is recorded once the interaction is done, so a retried or redelivered task (which
    did not finish) runs again, while a copy queued after it finished is refused."""
    refusal = seal_refusal(key, INTERACTION_TASK, [kind, payload], sealed, now=int(ctx.now().timestamp()),
                           max_age=int(max_age.total_seconds()))
    done = f"task:{sealed['nonce']}" if refusal is None and isinstance(sealed, dict) else ""
    if done:
        with ctx.store() as session:
            if session.get(ProcessedEvent, done) is not None:
                refusal = "replayed: this message was already carried out"
    if refusal is not None:
        user = payload.get("user") if isinstance(payload, dict) else None
        log.error("refused a queued slack interaction: %s", refusal, extra={"kind": str(kind)[:32], "user": user})
        return refusal
    run_interaction(ctx, kind, payload, answer)
    try:
        with ctx.store.begin() as session:
            session.add(ProcessedEvent(event_id=done, at=ctx.now()))
    except IntegrityError:  # a copy ran at the same time; both were idempotent
        pass
    return None


def run_interaction(ctx: Context, kind: str, payload: dict[str, Any], answer: Answer) -> None:
    """Carry out one queued interaction; refusals are answered, other failures raise (the task retries)."""
    try:
        HANDLERS[kind](ctx, payload, answer)
    except (Refused, NotFound, DurationError) as exc:
        answer(str(exc), kind != "approve")


def _file(ctx: Context, p: dict[str, Any], answer: Answer) -> None:
    filed = request_access(ctx, requester=p["user"], role_id=p["role"], duration=timedelta(seconds=p["duration"]),
                           reason=p.get("reason"), team_id=p.get("team"), client_token=p.get("token"))
    state = "approved" if filed.state is RequestState.APPROVED else "sent to the approvers"
    answer(f"Request #{filed.request_id} for `{esc(p['role'])}` is {state}.", True)


def _list(ctx: Context, p: dict[str, Any], answer: Answer) -> None:
    answer(list_text(ctx, p["user"]), True)


def _approve(ctx: Context, p: dict[str, Any], answer: Answer) -> None:
    # Success needs no answer: the approvers' message itself changes (the notifier updates it).
    request_id = int(p["request_id"])
    # A redelivery of this very click (same trigger id) whose vote already counted is not refused: the use
    # case sends its wake-ups again. A second click by the same approver is told "already approved".
    try:
        decide_request(ctx, request_id=request_id, approver=p["user"], vote=Vote.APPROVE, team_id=p.get("team"),
                       client_token=p.get("token"))
    except Refused as exc:
        if exc.reason is not Reason.SECURITY_KEY_REQUIRED:
            raise
        # Not a vote: the approver is sent to the console, where the vote is cast once their key answers.
        if not ctx.console_url:
            answer(f"{exc} The console is not set up here (KEYTURN_CONSOLE_URL): ask Keyturn's operators.", False)
            return
        link = f"{ctx.console_url}/console/requests/{request_id}/confirm"
        answer(f"Request #{request_id} needs your security key: <{link}|confirm your approval in Keyturn's "
               f"console>.", False)


HANDLERS: dict[str, Callable[[Context, dict[str, Any], Answer], None]] = {
    "file": _file, "list": _list, "approve": _approve,
}


def list_text(ctx: Context, user: str) -> str:
    with ctx.store() as session:
        pending = session.execute(select(AccessRequest).where(
            AccessRequest.requester == user, AccessRequest.state == RequestState.PENDING.value)).scalars().all()
        active = session.execute(select(Grant).where(
            Grant.requester == user, Grant.state.in_([s.value for s in LIVE_GRANT_STATES]))).scalars().all()
    lines = ["*Active access*"]
    lines += [f"• `{g.role_id}` until {slack_date(g.expires_at)} (grant {g.id})" for g in active] or ["_none_"]
    lines.append("*Pending requests*")
    lines += [f"• #{r.id} `{r.role_id}` for {seconds(r.duration_seconds)}" for r in pending] or ["_none_"]
    return "\n".join(lines)


def slack_answer(payload: dict[str, Any], client: Any | None,
                 origins: tuple[str, ...] = DEFAULT_RESPONSE_ORIGINS) -> Answer:
    """Answer on the response_url (ephemeral); without one, by DM. A lost answer is logged, never retried:
    the work it reports is already done. A response_url off Slack's own hosts (`origins`) is never fetched:
    it is logged and the answer dropped (a DM instead would tell a forger's victim nothing useful)."""

    def answer(text: str, replace: bool) -> None:
        try:
            url = payload.get("response_url")
            if url and not response_url_allowed(url, origins):
                log.warning("refused to answer on a response_url off Slack's hosts",
                            extra={"response_url": str(url)[:200], "user": payload.get("user")})
            elif url:
                WebhookClient(url, timeout=10).send(text=text, response_type="ephemeral", replace_original=replace)
            elif client is not None:
                client.chat_postMessage(channel=payload["user"], text=text)
        except Exception:
            log.warning("could not answer a slack interaction", exc_info=True)

    return answer
