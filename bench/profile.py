"""py-spy (from PyPI) attached to the stack's processes while a benchmark runs, and a summary of where the
sampled time goes. Sampling is `--nonblocking` (the target is not paused), 100 samples a second, idle
threads left out, so the profile shows where CPU and GIL time goes, not where threads wait."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.pyspy_summary import label, parse

RATE = 100


def py_spy() -> str | None:
    """py-spy next to this interpreter (the venv) or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    exe = py_spy()
    if exe is None:
        return None
    argv = [exe, "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--rate", str(RATE),
            "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes] | None, out: Path, timeout: float = 120) -> str | None:
    """Wait for py-spy; None when it worked, else the reason it did not."""
    if proc is None:
        return "py-spy is not installed (`pip install py-spy`)"
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if not out.exists() or out.stat().st_size == 0:
        return f"py-spy wrote nothing (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}"
    return None


def _ours(lbl: str) -> bool:
    return lbl.split(" (", 1)[-1].startswith(("service/", "workers/"))


def summarise(path: Path, top: int = 12) -> dict[str, Any]:
    """Total samples; the heaviest frames by inclusive share (Keyturn's own code and overall) and by self share.
    Process/thread frames py-spy adds at the root (`process 123:...`, `thread ...`) are left out."""
    stacks = parse(str(path))
    total = sum(c for _, c in stacks) or 1
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    for frames, count in stacks:
        labels = [label(f) for f in frames if not f.startswith(("process ", "thread "))]
        for name in set(labels):
            inclusive[name] = inclusive.get(name, 0) + count
        if labels:
            own[labels[-1]] = own.get(labels[-1], 0) + count
    rank = lambda d: sorted(d.items(), key=lambda kv: -kv[1])  # noqa: E731
    return {
        "samples": total,
        "keyturn_inclusive": [(n, c / total) for n, c in rank(inclusive) if _ours(n)][:top],
        "self": [(n, c / total) for n, c in rank(own)][:top],
    }


def render(name: str, what: str, s: dict[str, Any]) -> str:
    out = [f"**{name}** — {what}; {s['samples']} samples at {RATE}/s.", "",
           "| Keyturn function (inclusive) | share |", "| --- | ---: |"]
    out += [f"| `{n}` | {100 * f:.1f}% |" for n, f in s["keyturn_inclusive"]]
    out += ["", "| function (self time) | share |", "| --- | ---: |"]
    out += [f"| `{n}` | {100 * f:.1f}% |" for n, f in s["self"]]
    return "\n".join(out)
