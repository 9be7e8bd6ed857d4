"""How fast this machine is, so reports from different hosts can be compared.

The sessions' machines differ (an AMD EPYC host on 2026-11-23, an Intel Xeon host on 2026-12-01) and the
same code measured about twice as fast on one as on the other. Two figures go into every report:
- a fixed pure-Python workload (JSON and string work, no I/O), CPU time, best of 5: what a request costs;
- `import workers.main` in a new interpreter with the stack's environment, wall time, best of 3: the boot
  that the revocation-after-restart benchmark waits for.
Lower is faster. Each is taken at the start and at the end of the run, since a shared host drifts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

REFERENCE_ITEMS = 50_000


def reference_workload() -> int:
    """Fixed work of the kind a request does: build dicts, encode and decode JSON, format strings."""
    total = 0
    for i in range(REFERENCE_ITEMS):
        doc = {"id": i, "user": f"U{i:08d}", "text": "list " * 3, "flags": [i % 2 == 0, None]}
        total += len(json.loads(json.dumps(doc))["user"])
    return total


def reference_ms(repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        reference_workload()
        best = min(best, time.process_time() - started)
    return best * 1000


def worker_import_s(env: dict[str, str], repeat: int = 3) -> float | None:
    """Wall time of `import workers.main` (what a Celery worker does before it is ready), best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-c", "import workers.main"], env=env, capture_output=True,
                                  check=False, timeout=60)
        except (OSError, subprocess.TimeoutExpired):  # reported as "failed"; never costs the run its report
            return None
        if done.returncode != 0:
            return None
        best = min(best, time.monotonic() - started)
    return best


def measure(env: dict[str, str]) -> dict[str, Any]:
    return {"reference_ms": round(reference_ms(), 1), "worker_import_s": worker_import_s(env)}


def describe(start: dict[str, Any] | None, end: dict[str, Any] | None) -> str:
    """One line for the report's header."""
    def one(s: dict[str, Any]) -> str:
        imp = s.get("worker_import_s")
        return (f"reference workload {s['reference_ms']:.0f} ms CPU, `import workers.main` "
                + (f"{imp:.2f} s" if imp is not None else "failed"))

    if not start:
        return "not measured (a report from before bench/speed.py)"
    return f"at the start {one(start)}; at the end {one(end) if end else 'not measured'} (lower is faster)"


if __name__ == "__main__":
    import os

    print(json.dumps(measure(dict(os.environ))))
