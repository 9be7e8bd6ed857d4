"""How fast Keyturn acknowledges Slack: signed slash commands and button clicks against gunicorn.

Three kinds of request, each on its own clean stack, at 50 and at 200 concurrent clients (closed loop:
each client sends its next request as soon as the previous answer arrives), `--duration` seconds each:

* file     `/access bench-NN 1h bench`: files a request (a database transaction, then a wake-up on Redis),
            acknowledged with the ephemeral "Request #N ... is sent to the approvers";
* list     `/access list`: reads the user's pending requests and live grants;
* approve  an Approve click (`approve_request`) on a pending request: acknowledged at once, the decision
            (row lock, vote, grant) runs after the acknowledgement in Bolt's listener threads.

The load generator is wrk (C, event loop, two threads) with bench/slack_requests.lua cycling through
requests signed just before the run (a Slack signature stays valid for five minutes). It needs a small
fraction of one core, so the server keeps the rest: the CPU table in the report shows it.
Figures: p50 / p99 / max of the time to the acknowledgement, and errors (connection errors, timeouts,
non-200 answers and answers without the expected text).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.catalogue import (
    APPROVERS,
    N_PRINCIPALS,
    N_ROLES,
    TEAM_ID,
    principal,
    role_id,
    user_id,
)
from bench.env import (
    Stack,
    StackConfig,
)
from bench.measure import (
    cpu_table,
    cpu_usage,
)

LUA = Path(__file__).with_name("slack_requests.lua")
KINDS = ("file", "list", "approve")
LEVELS = (50, 200)
EXPECT = {"file": "sent to the approvers", "list": "Active access", "approve": ""}
WRK_THREADS = 2
TARGET_P99_MS = 100.0


def _bodies(stack: Stack, kind: str, count: int, first_request: int = 1) -> list[str]:
    if kind == "file":
        return [stack.command_body(user_id(1 + k % N_PRINCIPALS), f"{role_id(1 + k % N_ROLES)} 1h bench")
                for k in range(count)]
    if kind == "list":
        return [stack.command_body(user_id(1 + k % N_PRINCIPALS), "list") for k in range(count)]
    return [stack.approve_body(first_request + k, APPROVERS[k % 2]) for k in range(count)]


def write_signed(stack: Stack, bodies: list[str], path: Path) -> None:
    """One line per request: timestamp, signature, body; signed now (valid for five minutes)."""
    with path.open("w") as out:
        for body in bodies:
            h = stack.signed_headers(body)
            out.write(f"{h['X-Slack-Request-Timestamp']}\t{h['X-Slack-Signature']}\t{body}\n")


def precreate_pending(stack: Stack, count: int) -> int:
    """`count` pending requests, inserted in bulk with the values request_access writes (set-up, not measured).
    Each role gets 25 requesters, so every grant the clicks create fits the role's trust policy."""
    from sqlalchemy import func, insert, select

    from service.store.models import AccessRequest

    rt = stack.runtime()
    now = datetime.now(UTC)
    rows = []
    for k in range(count):
        r = k % N_ROLES
        u = 1 + (r * 25 + (k // N_ROLES) % 25) % N_PRINCIPALS
        rows.append({
            "role_id": role_id(1 + r), "requester": user_id(u), "team_id": TEAM_ID, "principal_arn": principal(u),
            "duration_seconds": 3600, "reason": "bench", "ticket": None, "state": "pending", "created_at": now,
            "extends_grant_id": None, "break_glass": False, "reminders_sent": 0, "version": 0,
            "next_reminder_at": now + timedelta(minutes=30),
        })
    with rt.ctx.store.begin() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(AccessRequest), rows[start:start + 5000])
        first = session.execute(select(func.min(AccessRequest.id))).scalar_one()
    return int(first)


def run_wrk(stack: Stack, requests_file: Path, connections: int, duration: int, expect: str) -> dict[str, Any]:
    argv = ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s",
            "-s", str(LUA), stack.web_url, "--", str(requests_file), str(WRK_THREADS), expect]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout")) + result["bad"]
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _count(stack: Stack, table: str) -> int:
    from sqlalchemy import func, select

    from service.store.models import AccessRequest, Approval

    model = {"requests": AccessRequest, "approvals": Approval}[table]
    with stack.runtime().ctx.store() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def run_one(stack: Stack, kind: str, connections: int, duration: int,
            on_load: Callable[[Stack], Any] | None = None) -> dict[str, Any]:
    """One kind at one level on a clean stack; `on_load(stack)` is called just before the load starts
    (bench/run.py attaches the profiler there)."""
    stack.reset()
    expected_rps = 600 if kind == "approve" else 400
    count = 2000 if kind != "approve" else max(2000, int(duration * expected_rps))
    first = precreate_pending(stack, count) if kind == "approve" else 1
    path = stack.workdir / f"requests-{kind}-{connections}.txt"
    write_signed(stack, _bodies(stack, kind, count, first), path)
    approvals_before = _count(stack, "approvals")
    if on_load is not None:
        on_load(stack)
    with cpu_usage(stack) as cpu:
        result = run_wrk(stack, path, connections, duration, EXPECT[kind])
    result.update(kind=kind, connections=connections, duration=duration, cpu=cpu, distinct_requests=count)
    if kind == "approve":
        # The decision runs after the acknowledgement: how much of it was done when the load stopped,
        # and how long the web workers took to finish the rest (bounded wait).
        done_at_end = _count(stack, "approvals") - approvals_before
        started, last, stable_since = time.monotonic(), done_at_end, time.monotonic()
        while time.monotonic() - started < 120 and time.monotonic() - stable_since < 3:
            time.sleep(0.5)
            now_count = _count(stack, "approvals") - approvals_before
            if now_count != last:
                last, stable_since = now_count, time.monotonic()
        result.update(decided_at_end=done_at_end, decided_total=last,
                      backlog_drain_s=max(0.0, stable_since - started))
    if kind == "file":
        result["filed"] = _count(stack, "requests")
    return result


def run(stack: Stack, *, duration: int = 60, levels: tuple[int, ...] = LEVELS,
        kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    runs = [run_one(stack, kind, level, duration) for level in levels for kind in kinds]
    return {"runs": runs, "duration": duration, "target_p99_ms": TARGET_P99_MS}


def render(result: dict[str, Any]) -> str:
    lines = [
        "| requests | clients | req/s | p50 ms | p99 ms | max ms | errors | target p99 ≤ 100 ms at 50 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in result["runs"]:
        verdict = ("met" if r["p99"] / 1000 <= TARGET_P99_MS else "**missed**") if r["connections"] == 50 else "—"
        lines.append(f"| {r['kind']} | {r['connections']} | {r['rps']:.0f} | {r['p50'] / 1000:.1f} | "
                     f"{r['p99'] / 1000:.1f} | {r['max'] / 1000:.1f} | {r['errors']} | {verdict} |")
    notes = []
    for r in result["runs"]:
        if r["errors"]:
            notes.append(f"* {r['kind']} at {r['connections']}: connect {r['connect']}, read {r['read']}, "
                         f"write {r['write']}, timeout {r['timeout']}, wrong answer {r['bad']} "
                         f"(first: `{r.get('bad_sample', '')[:120]}`)")
        if r["kind"] == "approve":
            notes.append(f"* approve at {r['connections']}: {r['requests']} clicks acknowledged; "
                         f"{r['decided_at_end']} decisions recorded when the load stopped, {r['decided_total']} "
                         f"after the web workers drained their listener backlog "
                         f"({r['backlog_drain_s']:.0f} s later); {r['distinct_requests']} distinct pending requests "
                         f"were signed, clicks beyond that re-click a decided request")
    out = "\n".join(lines)
    if notes:
        out += "\n\n" + "\n".join(notes)
    cpu_runs = [r for r in result["runs"] if r["connections"] == 50]
    for r in cpu_runs:
        out += f"\n\nCPU during `{r['kind']}` at 50 clients ({r['cpu']['_wall']:.0f} s):\n\n" + cpu_table(r["cpu"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Slack acknowledgement latency")
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--levels", default="50,200")
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    with Stack(StackConfig()) as stack:
        result = run(stack, duration=args.duration, levels=tuple(int(x) for x in args.levels.split(",")),
                     kinds=tuple(args.kinds.split(",")))
    print(render(result))
    print(json.dumps({k: v for k, v in result.items()}, default=str)[:2000])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
