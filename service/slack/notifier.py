"""Telling people: approvers' messages updated in place, requester DMs, the audit channel, App Home."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from service.catalog import Catalog
from service.core.rules import Vote
from service.core.states import LIVE_GRANT_STATES, RequestState
from service.slack import views
from service.slack.text import fold, quote, seconds, slack_date
from service.store.models import AccessRequest, Approval, Grant, ProcessedEvent, SlackMessage

log = logging.getLogger(__name__)
# The requester's own state changed: their App Home (if they look at it) must show it without a reopen.
HOME_EVENTS = frozenset({"request.filed", "request.decided", "grant.active", "grant.ended", "grant.failed"})


class SlackNotifier:
    def __init__(self, client: Any, store: Any, catalog: Catalog, now: Callable[[], datetime] | None = None):
        self.client, self.store, self.catalog = client, store, catalog
        self.now = now or (lambda: datetime.now(UTC))

    def handle(self, event: str, **ids: Any) -> None:
        handler = getattr(self, "on_" + event.replace(".", "_"), None)
        if handler is None:
            log.info("no Slack notification for %s", event)
            return
        handler(**ids)
        if event in HOME_EVENTS:
            self._refresh_requester_home(ids)

    def _refresh_requester_home(self, ids: dict[str, Any]) -> None:
        """Keep an open App Home current; best effort, so a retry never re-sends the message above."""
        try:
            if "grant_id" in ids:
                user = self._grant(ids["grant_id"]).requester
            else:
                user = self._request(ids["request_id"])[0].requester
            self.on_home_refresh(user)
        except Exception:
            log.warning("could not refresh the App Home", exc_info=True, extra={**ids})

    # -- helpers -------------------------------------------------------------------------------
    def _request(self, request_id: int) -> tuple[AccessRequest, list[str], list[SlackMessage]]:
        with self.store() as session:
            req = session.get(AccessRequest, request_id)
            if req is None:
                raise LookupError(f"no request {request_id}")
            approvals = list(session.execute(select(Approval.approver).where(
                Approval.request_id == request_id, Approval.vote == Vote.APPROVE.value)).scalars())
            messages = list(session.execute(select(SlackMessage).where(
                SlackMessage.request_id == request_id)).scalars())
        return req, approvals, messages

    def _approver_channels(self, req: AccessRequest) -> list[str]:
        role = self.catalog.role(req.role_id)
        if role is None:
            return []
        if role.approvers_channel:
            return [role.approvers_channel]
        users = {a for a in role.approvers if not a.startswith("S")}
        for group in (a for a in role.approvers if a.startswith("S")):
            users.update(self.client.usergroups_users_list(usergroup=group).get("users", []))
        return sorted(users)

    def _dm(self, user: str, text: str, blocks: list[dict[str, Any]] | None = None, *, once: str = "") -> None:
        self._once(once, lambda: self.client.chat_postMessage(channel=user, text=text,
                                                              blocks=blocks or [views.section(text)]))

    def _audit(self, text: str, *, once: str = "") -> None:
        if self.catalog.audit_channel:
            self._once(once, lambda: self.client.chat_postMessage(channel=self.catalog.audit_channel, text=text,
                                                                  blocks=[views.section(text)]))

    def _once(self, key: str, send: Callable[[], Any]) -> None:
        """Send at most once per key (an event, its subject, the recipient) across the task's retries and
        redeliveries: a notification that failed halfway, or a redelivered filing or Approve, repeats what it
        already said otherwise. Recorded after sending, so a crash in between repeats a message, never loses
        it. An empty key always sends."""
        if not key:
            send()
            return
        key = "notice:" + key
        try:
            with self.store() as session:
                if session.get(ProcessedEvent, key) is not None:
                    return
        except SQLAlchemyError:  # the record only prevents repeats: without it, send rather than stay silent
            log.warning("could not check whether a notice was sent; sending it", exc_info=True, extra={"key": key})
        send()
        try:
            with self.store.begin() as session:
                session.add(ProcessedEvent(event_id=key, at=self.now()))
        except IntegrityError:
            pass  # a concurrent delivery sent it too
        except SQLAlchemyError:  # sent but not recorded: a retry may repeat it; failing here would lose what follows
            log.warning("could not record a sent notice", exc_info=True, extra={"key": key})

    def _tell(self, event: str, user: str, dm: str, audit: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """The requester's DM and the audit line for one event (e.g. "grant.ended:7"), each sent once. Both are
        attempted even when one fails, then the first error is raised: a DM Slack refuses for good (a departed
        user) must not cost the audit channel its line, and the task's retry re-sends only what failed."""
        error: Exception | None = None
        for send in (lambda: self._dm(user, dm, blocks, once=f"{event}:requester"),
                     lambda: self._audit(audit, once=f"{event}:audit")):
            try:
                send()
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    def _update_approvers(self, request_id: int) -> None:
        req, approvals, messages = self._request(request_id)
        text, blocks = views.approver_message(req, self.catalog, approvals)
        for m in messages:
            self.client.chat_update(channel=m.channel, ts=m.ts, text=text, blocks=blocks)

    # -- events --------------------------------------------------------------------------------
    def on_request_filed(self, request_id: int) -> None:
        req, approvals, messages = self._request(request_id)
        posted = {m.channel for m in messages}
        text, blocks = views.approver_message(req, self.catalog, approvals)
        for channel in self._approver_channels(req):
            if channel in posted or (channel == req.requester and not self._self_ok(req)):
                continue  # posted by an earlier try of this task; never ask requesters to approve themselves
            answer = self.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            try:
                with self.store.begin() as session:
                    session.add(SlackMessage(request_id=request_id, channel=answer["channel"], ts=answer["ts"],
                                             kind="approvers"))
            except IntegrityError:
                pass
        self._dm(req.requester, f"Your request #{req.id} for `{req.role_id}` "
                                f"({seconds(req.duration_seconds)}) is waiting for approval.",
                 once=f"request.filed:{req.id}:requester")

    def _self_ok(self, req: AccessRequest) -> bool:
        role = self.catalog.role(req.role_id)
        return bool(role and role.allow_self_approval)

    def on_request_reminder(self, request_id: int) -> None:
        """Nudge the approvers in the thread of their message (or by DM), with backoff from the sweeper."""
        req, approvals, messages = self._request(request_id)
        if req.state != RequestState.PENDING.value:
            return
        text = (f":bell: Request #{req.id} from <@{req.requester}> for `{req.role_id}` is still waiting "
                f"({len(approvals)} approval(s) so far).")
        for m in messages:
            self.client.chat_postMessage(channel=m.channel, thread_ts=m.ts, text=text)

    def on_request_vote(self, request_id: int) -> None:
        self._update_approvers(request_id)

    def on_request_decided(self, request_id: int, break_glass: bool = False) -> None:
        self._update_approvers(request_id)
        req, _, _ = self._request(request_id)
        who = f"<@{req.decided_by}>" if req.decided_by not in (None, "keyturn", "auto") else "Keyturn"
        words = {
            RequestState.APPROVED.value: "was approved by {who}; I'll send the details once IAM has it.",
            RequestState.DENIED.value: "was denied by {who}.",
            RequestState.CANCELLED.value: "was cancelled.",
            RequestState.TIMED_OUT.value: "timed out without a decision. File it again if you still need it.",
        }
        line = f"Your request #{req.id} for `{req.role_id}` " + words.get(req.state, req.state).format(who=who)
        if req.decision_note and req.state == RequestState.DENIED.value:
            line += "\n" + quote(req.decision_note)
        alarm = ":rotating_light: *BREAK-GLASS* self-approval: " if req.break_glass else ""
        note = f" — {fold(req.decision_note)}" if req.decision_note else ""
        self._tell(f"request.decided:{req.id}", req.requester, line,
                   f"{alarm}Request #{req.id} by <@{req.requester}> for `{req.role_id}`: {req.state} by {who}{note}")

    def _grant(self, grant_id: int) -> Grant:
        with self.store() as session:
            grant = session.get(Grant, grant_id)
        if grant is None:
            raise LookupError(f"no grant {grant_id}")
        return grant

    def on_grant_active(self, grant_id: int) -> None:
        grant = self._grant(grant_id)
        text, blocks = views.granted_message(grant, self.catalog, self.now())
        self._tell(f"grant.active:{grant.id}", grant.requester, text,
                   f"Grant {grant.id}: <@{grant.requester}> has `{grant.role_id}` until "
                   f"{grant.expires_at:%Y-%m-%d %H:%M:%S} UTC", blocks)

    def on_grant_ended(self, grant_id: int) -> None:
        grant = self._grant(grant_id)
        how = "expired" if grant.state == "expired" else "was revoked"
        with self.store() as session:
            # An extension (or another grant of the same lease) keeps the door open: say so, not "gone".
            later = session.execute(select(Grant).where(
                Grant.lease_key == grant.lease_key, Grant.id != grant.id,
                Grant.state.in_([s.value for s in LIVE_GRANT_STATES])
            ).order_by(Grant.expires_at.desc())).scalars().first()
        if later is not None:
            told = (f"Your grant {grant.id} of `{grant.role_id}` {how}; you still have access "
                    f"until {slack_date(later.expires_at)} (grant {later.id}).")
            audit = f"Grant {grant.id} of `{grant.role_id}` to <@{grant.requester}> {how}; grant {later.id} continues"
        else:
            told = f"Your access to `{grant.role_id}` {how}; IAM no longer lets you in."
            audit = f"Grant {grant.id} of `{grant.role_id}` to <@{grant.requester}> {how} (removal verified)"
        self._tell(f"grant.ended:{grant.id}", grant.requester, told, audit)

    def on_grant_failed(self, grant_id: int) -> None:
        grant = self._grant(grant_id)
        reason = fold(grant.failure_reason or "unknown")
        self._tell(f"grant.failed:{grant.id}", grant.requester,
                   f"Your access to `{grant.role_id}` could not be granted: {reason}",
                   f":warning: Grant {grant.id} of `{grant.role_id}` to <@{grant.requester}> failed: {reason}")

    def on_grant_revocation_failed(self, grant_id: int) -> None:
        grant = self._grant(grant_id)
        self._audit(f":rotating_light: Removing grant {grant.id} (`{grant.role_id}`, <@{grant.requester}>) keeps "
                    f"failing: {fold(grant.failure_reason)}. IAM's own expiry condition still applies; "
                    f"`keyturn revoke {grant.id} --force --as ADMIN` retries the clean-up.")

    def on_vote_refused(self, request_id: int, actor: str, reason: str) -> None:
        self._audit(f":no_entry_sign: <@{actor}> tried to decide request #{request_id}: refused ({fold(reason)})")

    def on_home_refresh(self, user_id: str) -> None:
        with self.store() as session:
            active = list(session.execute(select(Grant).where(
                Grant.requester == user_id, Grant.state.in_([s.value for s in LIVE_GRANT_STATES]))).scalars())
            pending = list(session.execute(select(AccessRequest).where(
                AccessRequest.requester == user_id, AccessRequest.state == RequestState.PENDING.value)).scalars())
            recent = list(session.execute(select(Grant.role_id).where(Grant.requester == user_id)
                                          .order_by(Grant.id.desc()).limit(50)).scalars())
        seen: list[str] = []
        for role_id in recent:
            if role_id not in seen and role_id in self.catalog.roles:
                seen.append(role_id)
        self.client.views_publish(user_id=user_id, view=views.home_view(self.catalog, self.now(), active, pending,
                                                                        seen[:5]))
