"""In-process set-up helpers, figures (percentiles) and CPU accounting from /proc, shared by the benchmarks."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.catalogue import APPROVERS, user_id

if TYPE_CHECKING:
    from bench.env import Stack


# ---- in-process set-up helpers -----------------------------------------------------------------------
def file_and_approve(ctx: Any, user: int, role: str, duration: timedelta, reason: str = "bench") -> tuple[int, int]:
    """A request and its approval through Keyturn's own use cases; (request id, grant id)."""
    from service.core.rules import Vote
    from service.operations.decide_request import decide_request
    from service.operations.request_access import request_access

    filed = request_access(ctx, requester=user_id(user), role_id=role, duration=duration, reason=reason)
    decided = decide_request(ctx, request_id=filed.request_id, approver=APPROVERS[0], vote=Vote.APPROVE)
    assert decided.grant_id is not None
    return filed.request_id, decided.grant_id


def grant_states(rt: Any, ids: list[int] | None = None) -> dict[int, str]:
    from sqlalchemy import select

    from service.store.models import Grant

    with rt.ctx.store() as session:
        query = select(Grant.id, Grant.state)
        if ids is not None:
            query = query.where(Grant.id.in_(ids))
        return {int(i): str(s) for i, s in session.execute(query).all()}


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# ---- figures -----------------------------------------------------------------------------------------
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"n": len(v), "p50": percentile(v, 50), "p90": percentile(v, 90), "p99": percentile(v, 99),
            "max": v[-1] if v else float("nan"), "min": v[0] if v else float("nan")}


# ---- CPU accounting from /proc -----------------------------------------------------------------------
def _proc_ticks() -> dict[int, tuple[str, int, int]]:
    """pid -> (cmdline, process group, utime+stime ticks) for every process on the machine."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        out[int(entry)] = (cmd, int(fields[2]), int(fields[11]) + int(fields[12]))
    return out


def _machine_busy_ticks() -> int:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts) - parts[3] - parts[4]  # all but idle and iowait


def machine_busy_fraction(seconds: float = 1.0) -> float:
    """Share of all cores busy over the next `seconds` (anyone's processes)."""
    total = lambda: sum(int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:])  # noqa: E731
    b0, t0 = _machine_busy_ticks(), total()
    time.sleep(seconds)
    b1, t1 = _machine_busy_ticks(), total()
    return (b1 - b0) / max(1, t1 - t0)


@contextmanager
def cpu_usage(stack: Stack) -> Iterator[dict[str, float]]:
    """CPU seconds per part of the stack while the block runs, plus `other processes on the machine`
    (everything not ours: the machine is shared). Filled in on exit."""
    import resource

    hz = os.sysconf("SC_CLK_TCK")
    groups = stack.process_groups()
    db_name = stack.db_name

    def ours(snapshot: dict[int, tuple[str, int, int]]) -> dict[int, tuple[str, int]]:
        out = {}
        for pid, (cmd, pgid, ticks) in snapshot.items():
            if pgid in groups:
                out[pid] = (groups[pgid], ticks)
            elif db_name and cmd.startswith("postgres:") and db_name in cmd:
                out[pid] = ("PostgreSQL (bench database backends)", ticks)
            elif cmd.startswith("redis-server"):
                out[pid] = ("Redis (shared server)", ticks)
        return out

    self0, kids0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    before, busy0, started = ours(_proc_ticks()), _machine_busy_ticks(), time.monotonic()
    result: dict[str, float] = {}
    yield result
    after, busy1, wall = ours(_proc_ticks()), _machine_busy_ticks(), time.monotonic() - started
    self1, kids1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    for pid, (label, ticks) in after.items():
        result[label] = result.get(label, 0.0) + (ticks - before.get(pid, (label, 0))[1]) / hz
    result["bench orchestrator"] = (self1.ru_utime + self1.ru_stime) - (self0.ru_utime + self0.ru_stime)
    result["load generator (wrk)"] = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    accounted = sum(result.values())
    result["other processes on the machine (not the bench)"] = max(0.0, (busy1 - busy0) / hz - accounted)
    result["_wall"] = wall


def cpu_table(cpu: dict[str, float]) -> str:
    wall = cpu.get("_wall", 0.0) or 1.0
    ncpu = os.cpu_count() or 1
    rows = sorted(((k, v) for k, v in cpu.items() if not k.startswith("_") and v >= 0.05), key=lambda kv: -kv[1])
    lines = [f"| process | CPU s | share of {ncpu} cores |", "| --- | ---: | ---: |"]
    for label, secs in rows:
        lines.append(f"| {label} | {secs:.1f} | {100 * secs / (wall * ncpu):.0f}% |")
    return "\n".join(lines)


def _descendants(snapshot_ppid: dict[int, int], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in snapshot_ppid.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            out[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


class BusySampler:
    """How busy the whole machine was while a benchmark ran, and how much of that was not the bench.

    Every `every` seconds: the machine's busy ticks (/proc/stat) and the ticks of the bench's own processes
    (this process and its descendants, the bench database's PostgreSQL backends, the Redis server).
    `other` = machine - bench: the test suites and anything else running on the shared machine."""

    def __init__(self, db_name: str | None = None, every: float = 1.0):
        import threading

        self.db_name, self.every = db_name, every
        self.machine = self.ours = 0
        self.samples: list[float] = []  # machine busy fraction per interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.started = self.wall = 0.0

    def _ours(self) -> dict[int, int]:
        snap = _proc_ticks()
        mine = _descendants(_ppids(), os.getpid()) | {os.getpid()}
        out = {}
        for pid, (cmd, _pgid, ticks) in snap.items():
            if (pid in mine or cmd.startswith("redis-server")
                    or (self.db_name and cmd.startswith("postgres:") and self.db_name in cmd)):
                out[pid] = ticks
        return out

    def _loop(self) -> None:
        ncpu = os.cpu_count() or 1
        hz = os.sysconf("SC_CLK_TCK")
        busy0, ours0, t0 = _machine_busy_ticks(), self._ours(), time.monotonic()
        while not self._stop.wait(self.every):
            busy1, ours1, t1 = _machine_busy_ticks(), self._ours(), time.monotonic()
            self.machine += busy1 - busy0
            # a process new since the last sample counts all its ticks (it was born within the interval)
            self.ours += sum(t - ours0.get(pid, 0) for pid, t in ours1.items())
            self.samples.append((busy1 - busy0) / hz / max(1e-6, (t1 - t0) * ncpu))
            busy0, ours0, t0 = busy1, ours1, t1

    def __enter__(self) -> BusySampler:
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.wall = time.monotonic() - self.started

    def result(self) -> dict[str, float]:
        hz, ncpu = os.sysconf("SC_CLK_TCK"), os.cpu_count() or 1
        cap = max(1e-6, self.wall * ncpu)
        machine = self.machine / hz / cap
        ours = min(machine, self.ours / hz / cap)
        peak = sorted(self.samples)[int(0.9 * (len(self.samples) - 1))] if self.samples else float("nan")
        return {"wall_s": self.wall, "machine_busy": machine, "bench_busy": ours, "other_busy": machine - ours,
                "machine_busy_p90": peak}
