"""100 approvals clicked at the same moment on one role: every one lands, nothing is lost.

100 pending requests are filed (in-process, not measured), then 100 signed Approve clicks are posted to
gunicorn at once (100 threads released by a barrier). When no grant is provisioning any more, the database
and IAM (moto, read directly) are compared:

* every click approved its request and made exactly one grant;
* the principals in IAM are exactly those of the active grants (no lost update: a sync that read the
  document before another sync's write never drops that write's statement);
* IAM writes per grant, counted by the proxy (batching: one sync carries many grants).

Three cases:
1. trust policy, 25 people x 4 requests each (100 grants; overlapping grants share one statement);
2. group membership, 100 distinct people (one membership each: no size limit; one write per member);
3. trust policy, 100 distinct people: 100 statements would need ~27,000 characters, so only what fits in the
   8,192-character trust policy can land; the rest must fail cleanly with that reason and nothing written.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import requests

from bench.catalogue import (
    APPROVERS,
    GROUP_ROLE,
    principal,
    role_id,
    role_name,
    user_id,
    user_name,
)
from bench.env import (
    Stack,
    StackConfig,
)
from bench.measure import (
    wait_for,
)

CASES: tuple[tuple[str, str, list[int]], ...] = (
    ("trust policy, 25 people x 4 requests", role_id(1), [1 + k % 25 for k in range(100)]),
    ("group membership, 100 people", GROUP_ROLE, list(range(1, 101))),
    ("trust policy, 100 people (more than fits)", role_id(2), list(range(101, 201))),
)


def _facts(stack: Stack, request_ids: list[int]) -> dict[str, Any]:
    from sqlalchemy import select

    from service.store.models import AccessRequest, Grant

    with stack.runtime().ctx.store() as session:
        req_states = [str(s) for s in session.execute(
            select(AccessRequest.state).where(AccessRequest.id.in_(request_ids))).scalars()]
        grants = session.execute(select(Grant.request_id, Grant.state, Grant.principal_arn, Grant.failure_reason)
                                 .where(Grant.request_id.in_(request_ids))).all()
    return {"requests": req_states, "grants": grants}


def run_case(stack: Stack, label: str, role: str, users: list[int]) -> dict[str, Any]:
    from service.operations.request_access import request_access

    stack.reset()
    ctx = stack.setup_ctx()
    request_ids = [request_access(ctx, requester=user_id(u), role_id=role, duration=timedelta(hours=1),
                                  reason="bench").request_id for u in users]
    bodies = [stack.approve_body(rid, APPROVERS[k % 2]) for k, rid in enumerate(request_ids)]
    stack.wait_quiet(timeout=30)
    stack.proxy_reset()
    barrier = threading.Barrier(len(bodies))

    def click(body: str) -> tuple[int, float]:
        headers = stack.signed_headers(body)
        barrier.wait(timeout=60)
        t = time.time()
        answer = requests.post(stack.events_url, data=body.encode(), headers=headers, timeout=60)
        return answer.status_code, time.time() - t

    started = time.time()
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(click, bodies))
    acked = time.time()

    def settled() -> bool:
        f = _facts(stack, request_ids)
        return (len(f["grants"]) == len(request_ids) and
                not any(state == "provisioning" for _, state, _, _ in f["grants"]))

    try:
        wait_for("every grant settled", settled, timeout=120, every=0.05)
    except TimeoutError:
        pass
    settled_at = time.time()
    stack.wait_quiet(timeout=60)
    facts = _facts(stack, request_ids)
    writes = stack.proxy_stats()
    states: dict[str, int] = {}
    for _, state, _, _ in facts["grants"]:
        states[str(state)] = states.get(str(state), 0) + 1
    active = {str(p) for _, state, p, _ in facts["grants"] if state == "active"}
    if role == GROUP_ROLE:
        in_iam = {principal(int(name.removeprefix("bench"))) for name in stack.group_members()}
    else:
        in_iam = stack.owned_principals(role_name(int(role.rsplit("-", 1)[1])))
    failures = sorted({str(r)[:90] for _, state, _, r in facts["grants"] if state == "failed"})
    per_request: dict[Any, int] = {}
    for rid, *_ in facts["grants"]:
        per_request[rid] = per_request.get(rid, 0) + 1
    return {
        "case": label, "clicks": len(bodies), "http_200": sum(1 for s, _ in answers if s == 200),
        "ack_max_s": max(t for _, t in answers), "requests_approved": facts["requests"].count("approved"),
        "grants": len(facts["grants"]), "one_grant_per_request": all(v == 1 for v in per_request.values()),
        "states": states, "distinct_principals": len({principal(u) for u in users}),
        "principals_active": len(active), "principals_in_iam": len(in_iam),
        "iam_matches_active": in_iam == active, "missing_in_iam": len(active - in_iam),
        "extra_in_iam": len(in_iam - active), "failures": failures,
        "writes": writes["writes_forwarded"], "writes_by_action": {k: v for k, v in writes["forwarded"].items()
                                                                   if k[:1] in "UPDARC" and k != "ListRolePolicies"},
        "writes_per_grant": writes["writes_forwarded"] / len(bodies), "throttled": writes["writes_throttled"],
        "all_acked_s": acked - started, "settled_s": settled_at - started,
        "expect_user_names": sorted({user_name(u) for u in users})[:3],
    }


def run(stack: Stack) -> dict[str, Any]:
    return {"cases": [run_case(stack, label, role, users) for label, role, users in CASES]}


def render(result: dict[str, Any]) -> str:
    rows = ["| case | clicks → 200 | requests approved | grants (one per request) | end states | "
            "distinct people | in IAM = active grants | IAM writes (per grant) | clicks → all settled |",
            "| --- | ---: | ---: | --- | --- | ---: | --- | --- | ---: |"]
    for c in result["cases"]:
        match = ("**yes**" if c["iam_matches_active"] else
                 f"**NO** (missing {c['missing_in_iam']}, extra {c['extra_in_iam']})")
        rows.append(
            f"| {c['case']} | {c['http_200']}/{c['clicks']} | {c['requests_approved']} | {c['grants']} "
            f"({'yes' if c['one_grant_per_request'] else 'NO'}) | {c['states']} | {c['distinct_principals']} | "
            f"{match}: {c['principals_in_iam']} principals | {c['writes']} ({c['writes_per_grant']:.2f}) | "
            f"{c['settled_s']:.1f} s |")
    out = "\n".join(rows)
    for c in result["cases"]:
        if c["failures"]:
            shown = "; ".join(f"`{f}`" for f in c["failures"][:2])
            more = f" (and {len(c['failures']) - 2} more sizes)" if len(c["failures"]) > 2 else ""
            out += f"\n\n{c['case']}: failed grants say e.g. {shown}{more}"
        out += f"\n\n{c['case']}: writes by action {c['writes_by_action']}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="100 concurrent approvals on one role")
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    args = parser.parse_args()
    with Stack(StackConfig(worker_pool=args.pool)) as stack:
        result = run(stack)
    print(render(result))
    print(json.dumps(result, default=str)[:3000])


if __name__ == "__main__":
    main()
