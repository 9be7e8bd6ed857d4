"""From an approver's click to access in IAM.

Requests are filed with signed `/access` commands (distinct person and role each time, so each approval
adds one new statement). Then, one at a time: a signed Approve click is posted to gunicorn at t0, and moto is
polled directly (GetRole every ~10 ms, not through the proxy) until the requester's owned statement is in
the role's trust policy at t1. Figure: t1 - t0, p50 / p99 over `--approvals` clicks (≥ 50).
The audit log splits each one into click → decision committed → sync verified (grant active) → seen.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests

from bench.catalogue import (
    N_ROLES,
    principal,
    role_id,
    role_name,
    user_id,
)
from bench.env import (
    Stack,
    StackConfig,
)
from bench.measure import (
    cpu_table,
    cpu_usage,
    summary,
    wait_for,
)

TARGET_P99_S = 1.0
POLL_EVERY = 0.010
PER_APPROVAL_TIMEOUT = 30.0


def file_requests(stack: Stack, count: int, http: requests.Session) -> list[tuple[int, int, int]]:
    """(request id, user index, role index) for `count` requests filed through signed slash commands (the web
    queues each filing; the worker files it)."""
    from sqlalchemy import select

    from service.store.models import AccessRequest

    wanted = []
    for k in range(count):
        user, role = 1 + k, 1 + k % N_ROLES
        answer = stack.post(stack.command_body(user_id(user), f"{role_id(role)} 1h bench"), session=http)
        if answer.status_code != 200 or "Filing your request" not in answer.text:
            raise RuntimeError(f"filing failed: {answer.status_code} {answer.text[:200]}")
        wanted.append((user, role))

    def ids() -> dict[str, int]:
        with stack.runtime().ctx.store() as session:
            return {str(r): int(i) for r, i in session.execute(select(AccessRequest.requester, AccessRequest.id))}

    wait_for("every filing carried out", lambda: len(ids()) >= count, timeout=120, every=0.1)
    by_user = ids()
    return [(by_user[user_id(user)], user, role) for user, role in wanted]


def _audit_times(stack: Stack, request_id: int) -> dict[str, datetime]:
    from sqlalchemy import select

    from service.store.models import AuditEvent, Grant

    with stack.runtime().ctx.store() as session:
        grant_id = session.execute(select(Grant.id).where(Grant.request_id == request_id)).scalar_one_or_none()
        rows = session.execute(select(AuditEvent.action, AuditEvent.at).where(
            (AuditEvent.request_id == request_id) | (AuditEvent.grant_id == grant_id))).all()
    return {str(a): t for a, t in rows}


def run(stack: Stack, *, approvals: int = 60, gap: float = 0.3,
        on_start: Callable[[Stack], Any] | None = None) -> dict[str, Any]:
    """`on_start(stack)` is called just before the first click (bench/run.py attaches the profiler there)."""
    stack.reset()
    http = requests.Session()
    filed = file_requests(stack, approvals, http)
    stack.wait_quiet(timeout=60)  # the filing notifications are out of the way
    lags: list[float] = []
    acks: list[float] = []
    to_decision: list[float] = []
    to_active: list[float] = []
    timeouts = 0
    clicked: list[tuple[int, float]] = []
    if on_start is not None:
        on_start(stack)
    with cpu_usage(stack) as cpu:
        for request_id, user, role in filed:
            body = stack.approve_body(request_id)
            headers = stack.signed_headers(body)
            t0 = time.time()
            answer = http.post(stack.events_url, data=body.encode(), headers=headers, timeout=30)
            acks.append(time.time() - t0)
            if answer.status_code != 200:
                raise RuntimeError(f"click refused: {answer.status_code} {answer.text[:200]}")
            deadline = time.monotonic() + PER_APPROVAL_TIMEOUT
            seen = None
            while time.monotonic() < deadline:
                if principal(user) in stack.owned_principals(role_name(role)):
                    seen = time.time()
                    break
                time.sleep(POLL_EVERY)
            if seen is None:
                timeouts += 1
                continue
            lags.append(seen - t0)
            clicked.append((request_id, t0))
            time.sleep(gap)
    http.close()
    stack.wait_quiet(timeout=30)
    for request_id, t0 in clicked:
        audit = _audit_times(stack, request_id)
        if "request.approved" in audit:
            to_decision.append(audit["request.approved"].timestamp() - t0)
        if "grant.active" in audit:
            to_active.append(audit["grant.active"].timestamp() - t0)
    return {"approvals": approvals, "lag": summary(lags), "ack": summary(acks), "to_decision": summary(to_decision),
            "to_active": summary(to_active), "timeouts": timeouts, "cpu": cpu, "target_p99_s": TARGET_P99_S,
            "at": datetime.now(UTC).isoformat()}


def render(result: dict[str, Any]) -> str:
    lag = result["lag"]
    met = "met" if lag["p99"] <= TARGET_P99_S and not result["timeouts"] else "**missed**"
    rows = [
        "| from the click to … | n | p50 ms | p90 ms | p99 ms | max ms |", "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, key in (("the acknowledgement (HTTP 200)", "ack"), ("decision committed (audit time)", "to_decision"),
                       ("sync verified, grant active (audit time)", "to_active"),
                       ("**statement seen in IAM (moto, polled)**", "lag")):
        s = result[key]
        rows.append(f"| {label} | {s['n']} | {1000 * s['p50']:.0f} | {1000 * s['p90']:.0f} | "
                    f"{1000 * s['p99']:.0f} | {1000 * s['max']:.0f} |")
    out = "\n".join(rows)
    out += (f"\n\nTarget p99 ≤ {TARGET_P99_S:.0f} s: {met} (p99 {1000 * lag['p99']:.0f} ms over {lag['n']} approvals"
            f"{', ' + str(result['timeouts']) + ' never seen within 30 s' if result['timeouts'] else ''}). "
            "Audit times are taken at the start of each transaction by the process that wrote them; the poll adds "
            "up to ~10 ms plus one GetRole.")
    out += f"\n\nCPU over the {result['cpu']['_wall']:.0f} s of clicks:\n\n" + cpu_table(result["cpu"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="approval click to access in IAM")
    parser.add_argument("--approvals", type=int, default=60)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    args = parser.parse_args()
    with Stack(StackConfig(worker_pool=args.pool)) as stack:
        result = run(stack, approvals=args.approvals)
    print(render(result))
    print(json.dumps(result, default=str)[:3000])


if __name__ == "__main__":
    main()
