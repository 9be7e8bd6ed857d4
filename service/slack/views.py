"""Block Kit builders: pure functions from stored rows to blocks, user text always escaped."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from service.catalog import Catalog, Role
from service.slack.text import esc, fold, quote, seconds, slack_date
from service.store.limits import DURATION_MAX, NOTE_MAX, REASON_MAX, TICKET_MAX
from service.store.models import AccessRequest, Grant

Blocks = list[dict[str, Any]]

HELP = (
    "*Keyturn*: time-boxed access to AWS roles.\n"
    "• `/access` opens a form\n"
    "• `/access ROLE DURATION REASON…` files directly, e.g. `/access prod-admin 2h fixing INC-123`\n"
    "• `/access list` shows your pending and active access\n"
    "• `/access help` shows this"
)


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:3000]}]}


def button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id,
                         "value": value}
    if style:
        b["style"] = style
    return b


def role_line(role: Role | None, role_id: str, catalog: Catalog) -> str:
    if role is None:
        return f"`{esc(role_id)}`"
    account = catalog.accounts.get(role.account)
    return f"*{esc(role.name)}* (`{role.id}`) in `{account.label if account else role.account}`"


def request_fields(req: AccessRequest, catalog: Catalog) -> str:
    role = catalog.role(req.role_id)
    lines = [
        f"*Requester:* <@{req.requester}>",
        f"*Role:* {role_line(role, req.role_id, catalog)}",
        f"*Duration:* {seconds(req.duration_seconds)}" + (" (extension)" if req.extends_grant_id else ""),
    ]
    if req.ticket:
        lines.append(f"*Ticket:* {fold(req.ticket)}")
    # The requester's own words come last: one line as it is, several quoted line by line, so a
    # "Duration: 15m" or "Approved by" typed into a reason never starts a line of its own.
    reason = quote(req.reason)
    if not reason:
        lines.append("*Reason:* _none given_")
    else:
        lines.append(f"*Reason:* {reason[2:]}" if "\n" not in reason else f"*Reason:*\n{reason}")
    return "\n".join(lines)


def approver_message(req: AccessRequest, catalog: Catalog, approvals: list[str]) -> tuple[str, Blocks]:
    """The approvers' message: pending with buttons and quorum progress, or decided without buttons."""
    role = catalog.role(req.role_id)
    needed = role.min_approvals if role else 1
    blocks: Blocks = [section(f":key: Access request #{req.id}\n" + request_fields(req, catalog))]
    if req.state == "pending":
        blocks.append(context(f"Approvals: {len(approvals)} of {needed}"
                              + (" — " + ", ".join(f"<@{a}>" for a in approvals) if approvals else "")
                              + (" · :closed_lock_with_key: each confirmed with a security key in Keyturn's console"
                                 if role and role.require_security_key else "")))
        blocks.append({"type": "actions", "block_id": f"decide:{req.id}", "elements": [
            button("Approve", "approve_request", str(req.id), "primary"),
            button("Deny", "deny_request", str(req.id), "danger"),
        ]})
        return f"Access request #{req.id} from <@{req.requester}> for {req.role_id}", blocks
    when = slack_date(req.decided_at) if req.decided_at else ""
    who = "Keyturn" if req.decided_by in (None, "keyturn", "auto") else f"<@{req.decided_by}>"
    verdict = {"approved": ":white_check_mark: Approved", "denied": ":no_entry: Denied",
               "cancelled": ":wastebasket: Cancelled", "timed_out": ":hourglass: Timed out"}.get(req.state, req.state)
    line = f"{verdict} by {who} {when}"
    if req.break_glass:
        line += " — :rotating_light: *break-glass self-approval*"
    if req.decision_note:
        line += "\n" + quote(req.decision_note)
    blocks.append(section(line))
    return f"Access request #{req.id}: {req.state}", blocks


def profile_snippet(role: Role, grant: Grant, now: datetime, mfa_serial: str | None) -> str:
    """A ~/.aws/config profile for the granted role."""
    left = int((grant.expires_at - now).total_seconds())
    duration = max(900, min(left, 3600))
    lines = [f"[profile keyturn-{role.id}]", f"role_arn = {role.arn}", "source_profile = default",
             f"role_session_name = {grant.session_name or grant.principal_arn.rsplit('/', 1)[-1]}"]
    if role.require_mfa and mfa_serial:
        lines.append(f"mfa_serial = {mfa_serial}")
    lines.append(f"duration_seconds = {duration}")
    return "\n".join(lines)


def granted_message(grant: Grant, catalog: Catalog, now: datetime) -> tuple[str, Blocks]:
    role = catalog.roles[grant.role_id]
    account = catalog.accounts.get(role.account)
    mfa = grant.principal_arn.replace(":user/", ":mfa/") if role.require_mfa else None
    url = role.switch_role_url(account.label if account else None)
    blocks: Blocks = [
        section(f":unlock: You have *{esc(role.name)}* until {slack_date(grant.expires_at)}.\n"
                f"<{url}|Open the AWS console (Switch Role)>"),
        section("CLI profile for `~/.aws/config`:\n```" + profile_snippet(role, grant, now, mfa) + "```"),
        {"type": "actions", "block_id": f"grant:{grant.id}", "elements": [
            button("I'm done", "revoke_grant", str(grant.id), "danger"),
            button("Extend", "extend_grant", str(grant.id)),
        ]},
    ]
    return f"Access to {role.name} granted until {grant.expires_at:%H:%M} UTC", blocks


def request_modal(catalog: Catalog, user_id: str, role_id: str | None = None) -> dict[str, Any]:
    """The /access form: only the roles this user may request; once one is picked, its bounds and rules."""
    roles = catalog.roles_for(user_id)
    options = [{"text": {"type": "plain_text", "text": f"{r.name} ({r.id})"[:75]}, "value": r.id} for r in roles]
    picker: dict[str, Any] = {"type": "static_select", "action_id": "role", "options": options[:100]}
    chosen = next((o for o in options if o["value"] == role_id), None)
    role = catalog.role(role_id) if chosen and role_id else None
    if chosen:
        picker["initial_option"] = chosen
    longest = max((r.max_duration for r in roles), default=None)
    if role is not None:
        hint = f"e.g. 30m, 2h — at most {seconds(int(role.max_duration.total_seconds()))} for {role.id}"
        initial = seconds(int(min(role.default_duration, role.max_duration).total_seconds()))
    else:
        hint = "e.g. 30m, 2h, 1d — at most the role's maximum" + (
            f" (longest: {seconds(int(longest.total_seconds()))})" if longest else "")
        initial = "1h"
    return {
        "type": "modal", "callback_id": "request_access",
        "title": {"type": "plain_text", "text": "Request access"},
        "submit": {"type": "plain_text", "text": "Request"},
        "blocks": [
            # dispatch_action: picking a role re-draws the form with that role's bounds (listeners/command.py).
            {"type": "input", "block_id": "role", "dispatch_action": True,
             "label": {"type": "plain_text", "text": "Role"}, "element": picker},
            {"type": "input", "block_id": "duration", "label": {"type": "plain_text", "text": "Duration"},
             "hint": {"type": "plain_text", "text": hint},
             "element": {"type": "plain_text_input", "action_id": "duration", "initial_value": initial,
                         "max_length": DURATION_MAX}},
            {"type": "input", "block_id": "reason", "optional": not (role.require_reason if role else False),
             "label": {"type": "plain_text", "text": "Reason"},
             "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True,
                         "max_length": REASON_MAX}},
            {"type": "input", "block_id": "ticket", "optional": True,
             "label": {"type": "plain_text", "text": "Ticket"},
             "element": {"type": "plain_text_input", "action_id": "ticket", "max_length": TICKET_MAX}},
        ],
    }


def reason_modal(callback_id: str, title: str, label: str, metadata: dict[str, Any], *,
                 duration: bool = False) -> dict[str, Any]:
    """A small form for a deny reason or an extension."""
    blocks: Blocks = []
    if duration:
        blocks.append({"type": "input", "block_id": "duration", "label": {"type": "plain_text", "text": "More time"},
                       "element": {"type": "plain_text_input", "action_id": "duration", "initial_value": "1h",
                                   "max_length": DURATION_MAX}})
    blocks.append({"type": "input", "block_id": "reason", "optional": not duration,
                   "label": {"type": "plain_text", "text": label},
                   "element": {"type": "plain_text_input", "action_id": "reason", "multiline": True,
                               "max_length": REASON_MAX if duration else NOTE_MAX}})
    return {"type": "modal", "callback_id": callback_id, "title": {"type": "plain_text", "text": title},
            "submit": {"type": "plain_text", "text": "Send"}, "private_metadata": json.dumps(metadata),
            "blocks": blocks}


def home_view(catalog: Catalog, now: datetime, active: list[Grant], pending: list[AccessRequest],
              recent_roles: list[str]) -> dict[str, Any]:
    blocks: Blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Your AWS access"}}]
    if active:
        for g in active:
            left = seconds(max(0, int((g.expires_at - now).total_seconds())))
            role = catalog.role(g.role_id)
            blocks.append({**section(f"{role_line(role, g.role_id, catalog)}\n{left} left, until "
                                     f"{slack_date(g.expires_at)}"),
                           "accessory": button("I'm done", "revoke_grant", str(g.id), "danger")})
    else:
        blocks.append(section("_No active access._"))
    blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Pending requests"}})
    blocks.extend(section(f"#{r.id} {role_line(catalog.role(r.role_id), r.role_id, catalog)} for "
                          f"{seconds(r.duration_seconds)}") for r in pending)
    if not pending:
        blocks.append(section("_Nothing pending._"))
    if recent_roles:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": "Recently used"}})
        for role_id in recent_roles[:5]:
            blocks.append({**section(role_line(catalog.role(role_id), role_id, catalog)),
                           "accessory": button("Request again", "request_again", role_id)})
    return {"type": "home", "blocks": blocks}
