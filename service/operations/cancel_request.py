"""The requester withdraws a pending request."""

from __future__ import annotations

from service.core.rules import Reason, RequestView, decide_cancel
from service.core.states import RequestState
from service.operations.context import Context, NotFound, Refused
from service.store import repo


def cancel_request(ctx: Context, *, request_id: int, actor_id: str) -> None:
    """Cancel a pending request (requester or admin only)."""
    now = ctx.now()
    with ctx.store.begin() as session:
        request = repo.lock_request(session, request_id)
        if request is None:
            raise NotFound(f"no request {request_id}")
        decision = decide_cancel(RequestView(RequestState(request.state), request.requester), ctx.actor(actor_id))
        if decision.refused or not repo.move_request(
            session, request_id, RequestState.PENDING, RequestState.CANCELLED, decided_at=now, decided_by=actor_id
        ):
            raise Refused(decision.reason if decision.refused else Reason.NOT_PENDING)
        repo.audit(session, at=now, actor=actor_id, action="request.cancelled", request_id=request_id)
    ctx.dispatch.notify("request.decided", request_id=request_id)
