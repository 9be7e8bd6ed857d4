"""1,000 grants over 20 roles, all expiring within the same minute, with IAM writes throttled.

The IAM proxy in front of moto admits at most `--write-rate` (5) IAM writes a second (UpdateAssumeRolePolicy,
PutRolePolicy, DeleteRolePolicy, …) and answers IAM's `Throttling` error beyond that; reads are not limited.
The throttle is on from the start, so activation is measured under it too.

The grants: 20 roles x 25 people x 2 overlapping grants each. Fifty *distinct* people per role would need
about 50 x 270 = 13,500 characters of trust policy: more than the 8,192 the catalogue accepts
(`trust_policy_max_chars`) and more than AWS allows, so Keyturn would rightly refuse the extra grants.
Two grants per person and role is what a real account could hold, and it is still 1,000 grants, each
ending on its own (the statement stays until the later of the pair ends).

Figures: time from the first and from the last expiry until every grant is `expired` (removal verified by
read-back), each grant's lag (ended_at - expires_at), IAM writes per grant counted by the proxy during the
expiry phase (target < 0.2: batching per role), throttled answers, sync errors, and a final check that
no owned statement is left in any of the 20 trust policies.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import timedelta
from typing import Any

from bench.catalogue import (
    N_ROLES,
    role_id,
    role_name,
)
from bench.env import (
    Stack,
    StackConfig,
)
from bench.measure import (
    cpu_table,
    cpu_usage,
    file_and_approve,
    grant_states,
    summary,
    wait_for,
)

PEOPLE_PER_ROLE = 25
GRANTS_PER_PERSON = 2
TARGET_WRITES_PER_GRANT = 0.2


def _pairs(people: int = PEOPLE_PER_ROLE) -> list[tuple[int, int]]:
    """(user, role) for every grant, interleaved so each role's grants spread over the whole minute."""
    out = []
    for rep in range(GRANTS_PER_PERSON):
        for p in range(people):
            for r in range(1, N_ROLES + 1):
                out.append((1 + ((r - 1) * PEOPLE_PER_ROLE + (p + rep * 7) % people) % 200, r))
    return out


def _audit_counts(stack: Stack, since_id: int) -> dict[str, int]:
    from sqlalchemy import func, select

    from service.store.models import AuditEvent

    with stack.runtime().ctx.store() as session:
        rows = session.execute(select(AuditEvent.action, func.count()).where(AuditEvent.id > since_id)
                               .group_by(AuditEvent.action)).all()
    return {str(a): int(n) for a, n in rows}


def _max_audit_id(stack: Stack) -> int:
    from sqlalchemy import func, select

    from service.store.models import AuditEvent

    with stack.runtime().ctx.store() as session:
        return int(session.execute(select(func.coalesce(func.max(AuditEvent.id), 0))).scalar_one())


def run(stack: Stack, *, write_rate: float = 5.0, window: float = 60.0, head_room: float = 100.0,
        timeout: float = 600.0, people_per_role: int = PEOPLE_PER_ROLE) -> dict[str, Any]:
    from sqlalchemy import select

    from service.store.models import Grant

    stack.reset()
    stack.proxy_config(write_rate)
    pairs = _pairs(people_per_role)
    n = len(pairs)
    ctx = stack.setup_ctx()
    setup_started = time.time()
    first_expiry = setup_started + head_room
    ids = []
    for k, (user, role) in enumerate(pairs):
        target = first_expiry + window * k / n
        _, grant_id = file_and_approve(ctx, user, role_id(role), timedelta(seconds=max(1, round(target - time.time()))))
        ids.append(grant_id)
    filed_s = time.time() - setup_started
    wait_for("all grants active", lambda: set(grant_states(stack.runtime(), ids).values()) == {"active"},
             timeout=max(5.0, first_expiry - time.time() - 2))
    active_s = time.time() - setup_started
    activation = stack.proxy_stats()
    with ctx.store() as session:
        expiry = dict(session.execute(select(Grant.id, Grant.expires_at).where(Grant.id.in_(ids))).all())
    exp = {i: t.timestamp() for i, t in expiry.items()}
    first, last = min(exp.values()), max(exp.values())
    if first <= time.time():
        raise RuntimeError("set-up overran the first expiry; raise --head-room")
    time.sleep(max(0.0, first - time.time() - 1))
    stack.proxy_reset()
    audit_mark = _max_audit_id(stack)
    progress: list[tuple[float, int]] = []
    with cpu_usage(stack) as cpu:
        deadline = last + timeout
        while time.time() < deadline:
            states = grant_states(stack.runtime(), ids)
            done = sum(1 for s in states.values() if s == "expired")
            progress.append((time.time() - first, done))
            if all(s in ("expired", "revoked", "failed", "revocation_failed") for s in states.values()):
                break
            time.sleep(0.5)
    all_done_at = time.time()
    writes = stack.proxy_stats()
    with ctx.store() as session:
        rows = session.execute(select(Grant.id, Grant.state, Grant.expires_at, Grant.ended_at)
                               .where(Grant.id.in_(ids))).all()
    lags = [(e.timestamp() - x.timestamp()) for _, s, x, e in rows if s == "expired" and e is not None]
    states_count: dict[str, int] = {}
    for _, s, _, _ in rows:
        states_count[str(s)] = states_count.get(str(s), 0) + 1
    leftover = sum(len(stack.owned_principals(role_name(r))) for r in range(1, N_ROLES + 1))
    expired = states_count.get("expired", 0)
    return {
        "grants": n, "roles": N_ROLES, "people_per_role": people_per_role,
        "write_rate": write_rate, "window_s": last - first,
        "filed_s": filed_s, "active_s": active_s, "activation_writes": activation,
        "from_first_expiry_s": all_done_at - first, "from_last_expiry_s": all_done_at - last,
        "lag": summary(lags), "states": states_count, "writes": writes,
        "writes_per_grant": writes["writes_forwarded"] / n,
        "attempts_per_grant": (writes["writes_forwarded"] + writes["writes_throttled"]) / n,
        "audit": _audit_counts(stack, audit_mark), "leftover_statements": leftover, "all_expired": expired == n,
        "progress": progress[:: max(1, len(progress) // 40)], "cpu": cpu,
    }


def render(r: dict[str, Any]) -> str:
    w = r["writes"]
    met = "met" if r["writes_per_grant"] < TARGET_WRITES_PER_GRANT else "**missed**"
    lag = r["lag"]
    by_action = ", ".join(f"{k} {v}" for k, v in sorted(w["forwarded"].items()) if k[:1] in "UPDCARS" and
                          k.startswith(("Update", "Put", "Delete", "Create", "Add", "Remove")))
    throttled = ", ".join(f"{k} {v}" for k, v in sorted(w["throttled"].items())) or "none"
    aw = r["activation_writes"]
    out = [
        "| figure | value |", "| --- | --- |",
        f"| grants / roles / people per role | {r['grants']} / {r['roles']} / {r['people_per_role']} "
        f"(x{GRANTS_PER_PERSON} overlapping grants) |",
        f"| expiry window (first → last expiry) | {r['window_s']:.1f} s |",
        f"| IAM write throttle at the proxy | {r['write_rate']:.0f} writes/s |",
        f"| **all revoked (state `expired`, removal read back)** | {'yes' if r['all_expired'] else 'NO'}: "
        f"{r['from_first_expiry_s']:.1f} s after the first expiry, {r['from_last_expiry_s']:.1f} s after the last |",
        f"| per-grant lag (ended_at - expires_at) | p50 {lag['p50']:.1f} s, p90 {lag['p90']:.1f} s, "
        f"p99 {lag['p99']:.1f} s, max {lag['max']:.1f} s |",
        f"| **IAM writes per grant (expiry phase)** | **{r['writes_per_grant']:.3f}** "
        f"({w['writes_forwarded']} writes for {r['grants']} grants; target < {TARGET_WRITES_PER_GRANT}: {met}) |",
        f"| writes by action | {by_action} |",
        f"| throttled answers (Throttling) | {w['writes_throttled']} ({throttled}); attempts per grant "
        f"{r['attempts_per_grant']:.3f} |",
        f"| IAM reads in the expiry phase | {w['reads_forwarded']} |",
        f"| sync errors recorded (audit `sync.error`) | {r['audit'].get('sync.error', 0)} |",
        f"| end states | {r['states']} |",
        f"| owned statements left in the 20 trust policies | {r['leftover_statements']} |",
        f"| set-up: 1,000 requests filed and approved in-process | {r['filed_s']:.1f} s; all active "
        f"{r['active_s']:.1f} s after the start, with {aw['writes_forwarded']} IAM writes "
        f"({aw['writes_forwarded'] / r['grants']:.3f} per grant) and {aw['writes_throttled']} throttled |",
    ]
    prog = " · ".join(f"{t:.0f}s:{d}" for t, d in r["progress"])
    return ("\n".join(out) + f"\n\nProgress (seconds after the first expiry : grants expired): {prog}\n\n"
            f"CPU during the expiry phase ({r['cpu']['_wall']:.0f} s):\n\n" + cpu_table(r["cpu"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="1,000 grants expiring in one minute, IAM writes throttled")
    parser.add_argument("--write-rate", type=float, default=5.0)
    parser.add_argument("--head-room", type=float, default=100.0)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    args = parser.parse_args()
    with Stack(StackConfig(worker_pool=args.pool)) as stack:
        result = run(stack, write_rate=args.write_rate, head_room=args.head_room)
    print(render(result))
    print(json.dumps(result, default=str)[:3000])


if __name__ == "__main__":
    main()
