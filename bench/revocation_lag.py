"""From expiry to the statement gone from IAM, in normal operation and after a worker outage.

Normal: `--grants` short grants (distinct person and role each, spread over the 20 roles) are created through
Keyturn's own use cases and synced by the worker; their expiries are staggered ~0.25 s apart. moto is then
polled directly (GetRole on the roles with a grant past expiry, every ~20 ms) and each grant's lag is the
moment its statement is seen gone minus its `expires_at`. Nothing but the sweeper (beat, every
KEYTURN_SWEEP_INTERVAL) and the worker's sync end the access.

Outage: `--outage-grants` grants are made active, the worker is killed (SIGKILL of its process group, a crash)
before the first expiry, all of them expire while it is down (beat keeps sweeping and queueing wake-ups),
and `--outage-after` seconds after the last expiry the worker is started again. Lag is measured from that
restart (the spawn of the process) and, separately, from the worker's own `ready.` log line.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

from bench.catalogue import (
    N_ROLES,
    principal,
    role_id,
    role_name,
)
from bench.env import (
    Stack,
    StackConfig,
)
from bench.measure import (
    file_and_approve,
    grant_states,
    summary,
    wait_for,
)

POLL_EVERY = 0.02


def make_grants(stack: Stack, pairs: list[tuple[int, int]], first_expiry: float,
                spacing: float) -> list[dict[str, Any]]:
    """Grants whose expiries are `first_expiry + k * spacing` (to the second: durations are whole seconds)."""
    from sqlalchemy import select

    from service.store.models import Grant

    ctx = stack.setup_ctx()
    made = []
    for k, (user, role) in enumerate(pairs):
        seconds = max(1, round(first_expiry + k * spacing - time.time()))
        _, grant_id = file_and_approve(ctx, user, role_id(role), timedelta(seconds=seconds))
        made.append({"grant": grant_id, "user": user, "role": role})
    with ctx.store() as session:
        expiry = dict(session.execute(select(Grant.id, Grant.expires_at).where(
            Grant.id.in_([g["grant"] for g in made]))).all())
    for g in made:
        g["expires"] = expiry[g["grant"]].timestamp()
    return made


def wait_active(stack: Stack, grants: list[dict[str, Any]], timeout: float) -> float:
    """Until every grant is active and its statement is in IAM; returns the time that took."""
    started = time.monotonic()
    ids = [g["grant"] for g in grants]
    wait_for("grants active", lambda: set(grant_states(stack.runtime(), ids).values()) == {"active"}, timeout)
    for role in sorted({g["role"] for g in grants}):
        owned = stack.owned_principals(role_name(role))
        missing = [g for g in grants if g["role"] == role and principal(g["user"]) not in owned]
        if missing:
            raise RuntimeError(f"active grants without a statement on {role_name(role)}: {missing}")
    return time.monotonic() - started


def watch_removals(stack: Stack, grants: list[dict[str, Any]], timeout: float) -> dict[int, float]:
    """grant id -> wall-clock time its statement was first seen gone (only grants past expiry are watched).
    Also notes statements gone *before* expiry (there must be none)."""
    gone: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(gone) < len(grants) and time.monotonic() < deadline:
        now = time.time()
        due = [g for g in grants if g["grant"] not in gone and g["expires"] <= now]
        for role in sorted({g["role"] for g in due}):
            before = time.time()
            owned = stack.owned_principals(role_name(role))
            seen_at = (before + time.time()) / 2
            for g in due:
                if g["role"] == role and principal(g["user"]) not in owned:
                    gone[g["grant"]] = seen_at
        time.sleep(POLL_EVERY)
    return gone


def _ready_time(stack: Stack, after: float) -> float | None:
    """Wall-clock time of the worker's `ready.` line (its JSON log has the time) logged after `after`."""
    assert stack.worker is not None
    for line in stack.worker.log_text().splitlines():
        if "ready." in line and line.startswith("{"):
            try:
                at = datetime.fromisoformat(json.loads(line)["time"]).timestamp()
            except (ValueError, KeyError):
                continue
            if at >= after:
                return at
    match = re.search(r"ready\.", stack.worker.log_text())
    return time.time() if match else None


def run_normal(stack: Stack, grants: int = 60) -> dict[str, Any]:
    stack.reset()
    pairs = [(1 + k, 1 + k % N_ROLES) for k in range(grants)]
    setup_started = time.time()
    # Enough head room to create and activate them all before the first expiry.
    made = make_grants(stack, pairs, first_expiry=setup_started + 25 + 0.05 * grants, spacing=0.25)
    activation = wait_active(stack, made, timeout=120)
    if min(g["expires"] for g in made) <= time.time():
        raise RuntimeError("set-up overran the first expiry; raise the head room")
    gone = watch_removals(stack, made, timeout=max(g["expires"] for g in made) - time.time() + 60)
    lags = [gone[g["grant"]] - g["expires"] for g in made if g["grant"] in gone]
    states = grant_states(stack.runtime(), [g["grant"] for g in made])
    return {"grants": grants, "lag": summary(lags), "not_removed": len(made) - len(gone),
            "states": _count(states.values()), "activation_s": activation}


def run_outage(stack: Stack, grants: int = 30, after: float = 5.0) -> dict[str, Any]:
    stack.reset()
    pairs = [(101 + k, 1 + k % N_ROLES) for k in range(grants)]
    made = make_grants(stack, pairs, first_expiry=time.time() + 20 + 0.05 * grants, spacing=0.2)
    wait_active(stack, made, timeout=120)
    if min(g["expires"] for g in made) <= time.time() + 1:
        raise RuntimeError("set-up overran the first expiry; raise the head room")
    stack.kill_worker()
    killed_at = time.time()
    last_expiry = max(g["expires"] for g in made)
    time.sleep(max(0.0, last_expiry + after - time.time()))
    still_there = sum(1 for g in made if principal(g["user"]) in stack.owned_principals(role_name(g["role"])))
    restarted = stack.start_worker()
    gone = watch_removals(stack, made, timeout=90)
    ready = _ready_time(stack, restarted - 1)
    from_restart = [gone[g["grant"]] - restarted for g in made if g["grant"] in gone]
    from_ready = [gone[g["grant"]] - ready for g in made if g["grant"] in gone] if ready else []
    stack.wait_worker_ready(timeout=30)
    states = grant_states(stack.runtime(), [g["grant"] for g in made])
    return {"grants": grants, "outage_s": restarted - killed_at, "still_there_before_restart": still_there,
            "boot_s": (ready - restarted) if ready else None, "from_restart": summary(from_restart),
            "from_ready": summary(from_ready), "not_removed": len(made) - len(gone), "states": _count(states.values()),
            "expired_before_restart_s": restarted - last_expiry}


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def run(stack: Stack, *, grants: int = 60, outage_grants: int = 30, outage_after: float = 5.0) -> dict[str, Any]:
    sweep = stack.config.sweep_interval_s
    return {"normal": run_normal(stack, grants), "outage": run_outage(stack, outage_grants, outage_after),
            "sweep_interval_s": sweep}


def render(result: dict[str, Any]) -> str:
    n, o, sweep = result["normal"], result["outage"], result["sweep_interval_s"]
    lag, fr, fy = n["lag"], o["from_restart"], o["from_ready"]
    ok_n = "met" if lag["p99"] <= 2.0 and not n["not_removed"] else "**missed**"
    ok_o = "met" if fr["p99"] <= sweep + 2.0 and not o["not_removed"] else "**missed**"
    rows = ["| case | n | p50 s | p90 s | p99 s | max s | target | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
            f"| normal: expiry → statement gone | {lag['n']} | {lag['p50']:.2f} | {lag['p90']:.2f} | "
            f"{lag['p99']:.2f} | {lag['max']:.2f} | p99 ≤ 2 s | {ok_n} |",
            f"| outage: worker restart (spawn) → statement gone | {fr['n']} | {fr['p50']:.2f} | {fr['p90']:.2f} | "
            f"{fr['p99']:.2f} | {fr['max']:.2f} | p99 ≤ {sweep:.0f} s + 2 s | {ok_o} |"]
    if fy["n"]:
        rows.append(f"| outage: worker `ready.` → statement gone | {fy['n']} | {fy['p50']:.2f} | {fy['p90']:.2f} | "
                    f"{fy['p99']:.2f} | {fy['max']:.2f} | (for reference) | |")
    out = "\n".join(rows)
    boot = f"{o['boot_s']:.1f} s" if o["boot_s"] is not None else "unknown"
    out += (f"\n\nNormal: {n['grants']} grants, expiries ~0.25 s apart over the 20 roles; end states {n['states']}; "
            f"{n['not_removed']} not removed within 60 s.\n"
            f"Outage: {o['grants']} grants; the worker was down {o['outage_s']:.1f} s and restarted "
            f"{o['expired_before_restart_s']:.1f} s after the last expiry; {o['still_there_before_restart']} of "
            f"{o['grants']} statements were still in IAM just before the restart (expected: all; IAM's own "
            f"`DateLessThan aws:CurrentTime` condition already refused them); worker boot (spawn → `ready.`) {boot}; "
            f"end states {o['states']}; {o['not_removed']} not removed within 90 s.")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="expiry to removal")
    parser.add_argument("--grants", type=int, default=60)
    parser.add_argument("--outage-grants", type=int, default=30)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo"])
    args = parser.parse_args()
    with Stack(StackConfig(worker_pool=args.pool)) as stack:
        result = run(stack, grants=args.grants, outage_grants=args.outage_grants)
    print(render(result))
    print(json.dumps(result, default=str)[:3000])


if __name__ == "__main__":
    main()
