"""`make bench`: every benchmark in bench/ on one stack on this machine, then bench/RESULTS.md.

    .venv/bin/python -m bench.run            # the full run (what RESULTS.md must come from), ~25 min
    .venv/bin/python -m bench.run --quick    # short durations, for development; writes bench/RESULTS-quick.md
    .venv/bin/python -m bench.run --only ack,approval --quick

Each benchmark's own module measures and renders its table; this file runs them in turn on one `Stack`
(each starts from `stack.reset()`), records how busy the machine was meanwhile (it is shared), profiles the
web and worker processes with py-spy, and writes the report. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    ack_latency,
    approval_to_access,
    contention,
    exact_second,
    floor,
    profile,
    revocation_lag,
    scale,
    speed,
)
from bench.env import Stack, StackConfig
from bench.measure import BusySampler

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass
class Bench:
    key: str
    title: str
    target: str
    run: Callable[[Stack, bool], dict[str, Any]]
    render: Callable[[dict[str, Any]], str]
    verdict: Callable[[dict[str, Any]], tuple[bool, str]]
    # The latency (seconds) shown beside the IAM floor measured right after the benchmark, as a ratio.
    headline: Callable[[dict[str, Any]], float] | None = None


# ---- verdicts: (met?, one line) ------------------------------------------------------------------------
def _ack_verdict(r: dict[str, Any]) -> tuple[bool, str]:
    at50 = [x for x in r["runs"] if x["connections"] == 50 and x.get("worker_nice", 0) == r.get("worker_nice", 0)]
    worst = max(at50, key=lambda x: x["p99"])
    ok = all(x["p99"] / 1000 <= ack_latency.TARGET_P99_MS for x in at50)
    errors = sum(x["errors"] for x in r["runs"])
    line = f"closed loop (capacity): worst p99 at 50 clients {worst['p99'] / 1000:.0f} ms (`{worst['kind']}`)"
    if r.get("open_loop"):  # the latency target is judged open loop; the closed-loop rows are capacity
        open_worst = max(r["open_loop"], key=lambda x: x["p99"])
        ok = all(x["p99"] / 1000 <= ack_latency.TARGET_P99_MS and not x["errors"] for x in r["open_loop"])
        errors += sum(x["errors"] for x in r["open_loop"])
        line = (f"open loop at {open_worst['rate']:.0f}/s: worst p99 {open_worst['p99'] / 1000:.0f} ms "
                f"(`{open_worst['kind']}`); " + line)
    return ok, f"{line}; {errors} errors over all runs"


def _approval_verdict(r: dict[str, Any]) -> tuple[bool, str]:
    lag = r["lag"]
    return (lag["p99"] <= approval_to_access.TARGET_P99_S and not r["timeouts"],
            f"p50 {1000 * lag['p50']:.0f} ms, p99 {1000 * lag['p99']:.0f} ms over {lag['n']} approvals")


def _revocation_verdict(r: dict[str, Any]) -> tuple[bool, str]:
    n, o, sweep = r["normal"], r["outage"], r["sweep_interval_s"]
    ok_n = n["lag"]["p99"] <= 2.0 and not n["not_removed"]
    ok_o = o["from_restart"]["p99"] <= sweep + 2.0 and not o["not_removed"]
    return ok_n and ok_o, (f"normal p99 {n['lag']['p99']:.2f} s ({'met' if ok_n else 'missed'}); after a restart "
                           f"p99 {o['from_restart']['p99']:.2f} s ({'met' if ok_o else 'missed'})")


def _scale_verdict(r: dict[str, Any]) -> tuple[bool, str]:
    return (r["writes_per_grant"] < scale.TARGET_WRITES_PER_GRANT and r["all_expired"],
            f"{r['writes_per_grant']:.3f} IAM writes per grant; all {r['grants']} revoked "
            f"{r['from_last_expiry_s']:.0f} s after the last expiry" if r["all_expired"] else
            f"{r['writes_per_grant']:.3f} IAM writes per grant; NOT all revoked: {r['states']}")


def _contention_verdict(r: dict[str, Any]) -> tuple[bool, str]:
    ok = True
    parts = []
    for c in r["cases"]:
        fits = "more than fits" not in c["case"]
        landed = c["requests_approved"] == c["clicks"] and c["one_grant_per_request"]
        all_active = c["states"].get("active", 0) == c["clicks"]
        ok_case = landed and c["iam_matches_active"] and (all_active or not fits)
        ok = ok and ok_case
        parts.append(f"{c['case']}: {'ok' if ok_case else 'NOT ok'}, {c['writes_per_grant']:.2f} writes/grant")
    return ok, "; ".join(parts)


# ---- the benchmarks, full and quick --------------------------------------------------------------------
def _ack(stack: Stack, quick: bool) -> dict[str, Any]:
    return ack_latency.run(stack, duration=5 if quick else 60)


def _approval(stack: Stack, quick: bool) -> dict[str, Any]:
    return approval_to_access.run(stack, approvals=10 if quick else 100)


def _revocation(stack: Stack, quick: bool) -> dict[str, Any]:
    if quick:
        return revocation_lag.run(stack, grants=10, outage_grants=6, outage_after=2.0)
    return revocation_lag.run(stack, grants=60, outage_grants=30, outage_after=5.0)


def _scale(stack: Stack, quick: bool) -> dict[str, Any]:
    if quick:
        return scale.run(stack, people_per_role=5, window=15, head_room=45, timeout=180)
    return scale.run(stack)


def _exact(stack: Stack, quick: bool) -> dict[str, Any]:
    return exact_second.run(stack, grants=10 if quick else 40, clicks=10 if quick else 50)


def _contention(stack: Stack, quick: bool) -> dict[str, Any]:
    return contention.run(stack)


BENCHES = [
    Bench("ack", "1. Slack acknowledgement latency",
          "p99 ≤ 100 ms open loop at 200 requests/s (closed loop at 50/200 clients: capacity, reported)",
          _ack, ack_latency.render, _ack_verdict,
          lambda r: max([x["p99"] for x in r.get("open_loop") or r["runs"]]) / 1e6),
    Bench("approval", "2. Approval click → access in IAM", "p99 ≤ 1 s",
          _approval, approval_to_access.render, _approval_verdict, lambda r: r["lag"]["p99"]),
    Bench("revocation", "3. Revocation lag", "p99 ≤ 2 s normally; ≤ one sweep interval + 2 s after a worker restart",
          _revocation, revocation_lag.render, _revocation_verdict,
          lambda r: r["normal"]["lag"]["p99"]),
    Bench("scale", "4. Scale: 1,000 grants over 20 roles expiring in one minute, IAM writes throttled to 5/s",
          "IAM writes per grant < 0.2 (and every grant revoked)", _scale, scale.render, _scale_verdict),
    Bench("contention", "5. Contention: 100 concurrent approvals on one role",
          "all land, no lost update (IAM = active grants); IAM writes per grant reported",
          _contention, contention.render, _contention_verdict),
    Bench("exact", "6. Exact-second expiry: exposure, clean-up lag, \"I'm done\" → session cut",
          "exposure after expiry 0 (workers running and stopped); clean-up lag p99 ≤ 300 ms; "
          "\"I'm done\" → sessions denied in IAM p99 ≤ 1 s", _exact, exact_second.render, exact_second.verdict,
          lambda r: r["done"]["denied"]["p99"]),
]


# ---- profiles ------------------------------------------------------------------------------------------
def run_profiles(stack: Stack, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """py-spy on gunicorn (all workers) during signed `/access` commands and Approve clicks at 50 clients, and
    on the Celery worker (pool children too) during approval clicks. Separate runs: not the measured ones."""
    seconds = 5 if quick else 20
    done: list[dict[str, Any]] = []
    for kind in ("file", "approve"):
        out = out_dir / f"profile-web-{kind}.txt"
        holder: dict[str, Any] = {}

        def attach(s: Stack, out: Path = out, holder: dict[str, Any] = holder) -> None:
            assert s.web is not None and s.web.pid is not None
            holder["proc"] = profile.start(s.web.pid, seconds, out)

        r = ack_latency.run_one(stack, kind, 50, seconds, on_load=attach)
        err = profile.finish(holder.get("proc"), out)
        done.append({"name": f"gunicorn during `{kind}` at 50 clients", "file": out, "error": err,
                     "what": f"{r['rps']:.0f} req/s, p99 {r['p99'] / 1000:.0f} ms while profiled"})
    out = out_dir / "profile-worker-approval.txt"
    holder = {}

    def attach_worker(s: Stack) -> None:
        assert s.worker is not None and s.worker.pid is not None
        holder["proc"] = profile.start(s.worker.pid, 10 if quick else 30, out)

    r = approval_to_access.run(stack, approvals=10 if quick else 30, on_start=attach_worker)
    err = profile.finish(holder.get("proc"), out)
    done.append({"name": "Celery worker during approval clicks", "file": out, "error": err,
                 "what": f"{r['lag']['n']} approvals, p99 {1000 * r['lag']['p99']:.0f} ms while profiled"})
    for d in done:
        if d["error"] is None:
            d["summary"] = profile.summarise(d["file"])
    return done


# ---- which run the hand-written notes describe ---------------------------------------------------------
NOTES_TAG = re.compile(r"<!--\s*notes for run:\s*(\S+)\s*-->")


def run_id(meta: dict[str, Any]) -> str:
    """The run a report comes from: its own id, or (reports from before ids) its commit and date."""
    stamp = str(meta["date"]).removesuffix(" UTC").replace(" ", "T")
    return str(meta.get("run_id") or f"{str(meta['commit'])[:12]}@{stamp}")


def notes_for(text: str, meta: dict[str, Any]) -> tuple[str, str]:
    """(notes to print, a line saying why they are left out). Notes are printed only under the run they name
    in their `<!-- notes for run: ID -->` line; a fresh run has a fresh id, so it never shows old notes as its
    own (write the notes after the run, then `--rerender`, which keeps the run's id)."""
    if not text.strip():
        return "", ""
    tag = NOTES_TAG.search(text)
    if tag and tag.group(1) == run_id(meta):
        return NOTES_TAG.sub("", text, count=1).strip(), ""
    named = f"run `{tag.group(1)}`" if tag else "no run (they carry no `<!-- notes for run: … -->` line)"
    return "", (f"The hand-written notes in bench/NOTES.md describe {named}, not this run (`{run_id(meta)}`): "
                "they are left out of this report.")


# ---- the report ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {"cores": os.cpu_count(), "cores_cpuinfo": cpuinfo.count("processor\t:"),
            "model": models[0] if models else platform.processor(), "memory_gib": mem_kb / 1024 / 1024,
            "kernel": platform.release(), "python": platform.python_version()}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def tool_versions() -> dict[str, str]:
    out = {}
    if shutil.which("wrk"):
        out["wrk"] = (subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
                      .splitlines() or ["?"])[0].split(" [")[0]
    exe = profile.py_spy()
    if exe:
        out["py-spy"] = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return out


def command_line() -> str:
    cmd = shlex.join([os.path.relpath(sys.executable, REPO), "-m", "bench.run", *sys.argv[1:]])
    return f"make bench (runs {cmd})" if os.environ.get("MAKELEVEL") else cmd


def command_md(command: str) -> str:
    """`make bench`, which runs `…`; or the plain command."""
    command = command.replace("`", "").replace("  ", " ")
    if command.startswith("make bench (runs "):
        return f"`make bench`, which runs `{command.removeprefix('make bench (runs ').rstrip(')')}`"
    return f"`{command}`"


def busy_line(b: dict[str, float]) -> str:
    return (f"Machine busy during this benchmark ({b['wall_s']:.0f} s): **{100 * b['machine_busy']:.0f}%** of "
            f"{os.cpu_count()} cores on average (90th percentile of 1 s samples {100 * b['machine_busy_p90']:.0f}%), "
            f"of which {100 * b['bench_busy']:.0f}% the bench's own processes and "
            f"**{100 * b['other_busy']:.0f}% other processes** (other engineers' test suites).")


def report(results: list[dict[str, Any]], profiles: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    dirty = meta["dirty"] if isinstance(meta["dirty"], list) else []
    quick = " (QUICK mode: short durations, not the figures of record)" if meta["quick"] else ""
    lines = [
        "# Keyturn benchmarks", "",
        f"Generated by `bench/run.py` on {meta['date']}{quick}.", "",
        f"* **command:** {command_md(meta['command'])}",
        f"* **commit:** `{meta['commit']}`" + (
            f" plus uncommitted changes in the shared working tree that were measured too: "
            f"{', '.join('`' + d.split(maxsplit=1)[-1] + '`' for d in dirty)}" if dirty else ""),
        f"* **machine:** {m['cores']} cores ({m['model']}), {m['memory_gib']:.1f} GiB memory, Linux {m['kernel']}, "
        f"Python {m['python']}",
        f"* **machine speed:** {speed.describe(meta.get('speed_start'), meta.get('speed_end'))}",
        f"* **stack:** {meta['stack']}; moto server behind the counting/throttling IAM proxy; fake Slack Web API; "
        f"Redis db 14 on the local server; a fresh PostgreSQL database; everything on loopback on this machine",
        f"* **load generator:** {meta['loadgen']}",
        f"* **profiler:** {meta['tools'].get('py-spy', 'py-spy not installed')}",
        f"* **total time:** {meta['elapsed_s'] / 60:.1f} min",
        f"* **run id:** `{run_id(meta)}`",
        f"* **load average** (1/5/15 min, /proc/loadavg) at the start: {meta.get('loadavg_start', '?')}; "
        f"at the end: {meta.get('loadavg_end', '?')}",
        "",
        "**The machine is shared.** Other engineers were running test suites on the same 2 cores while this ran, "
        "which disturbs the figures (mostly the latency tails). Each benchmark below records how busy the "
        "machine was while it ran and how much of that was not the bench (from /proc/stat and /proc/*/stat, "
        "sampled every second).", "",
        "## Summary", "",
        "| benchmark | target | result | verdict | p99 ÷ IAM floor p50 (floor) | machine busy (others) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r.get("error"):
            lines.append(f"| {r['title']} | {r['target']} | failed to run: `{r['error'].splitlines()[-1][:100]}` "
                         f"| **not measured** | |")
            continue
        b = r["busy"]
        old = f" (not re-run this time, from `{r['not_rerun']['commit'][:12]}`)" if r.get("not_rerun") else ""
        fl = r.get("floor")
        vs_floor = (f"{floor.ratio(r['headline_s'], fl)} ({1000 * fl['p50']:.1f} ms)"
                    if fl and r.get("headline_s") is not None else "—")
        lines.append(f"| {r['title']}{old} | {r['target']} | {r['line']} | {'met' if r['met'] else '**missed**'} | "
                     f"{vs_floor} | {100 * b['machine_busy']:.0f}% ({100 * b['other_busy']:.0f}%) |")
    notes, left_out = notes_for(meta.get("notes") or "", meta)
    if notes:
        lines += ["", "## Notes on the misses and on the figures", "",
                  f"*Hand-written for run `{run_id(meta)}` (commit `{str(meta['commit'])[:12]}`), this report's run.*",
                  "", notes]
    elif left_out:
        lines += ["", f"*{left_out}*"]
    for r in results:
        lines += ["", f"## {r['title']}", "", f"Target: {r['target']}.", ""]
        if r.get("error"):
            lines += ["It failed to run:", "", "```", r["error"][-2000:], "```"]
            continue
        if r.get("not_rerun"):
            nr = r["not_rerun"]
            lines += [f"*Not re-run this time: from run `{nr['run_id']}` on {nr['date']} at commit "
                      f"`{nr['commit'][:12]}` ({command_md(nr['command'])}), kept from the previous report. Its "
                      f"notes, if any, are not in this report.*", ""]
        if r.get("rerun"):
            lines += [f"*Measured in a separate run on {r['rerun']['date']} at commit `{r['rerun']['commit'][:12]}` "
                      f"({command_md(r['rerun']['command'])}), merged into this report; see the notes.*", ""]
        lines += [f"Verdict: **{'met' if r['met'] else 'missed'}** ({r['line']}).", "", busy_line(r["busy"]), "",
                  f"IAM {floor.line(r.get('floor'))}, measured right after this benchmark; the summary's ratio "
                  "is this benchmark's headline p99 over that p50.", "",
                  r["rendered"]]
    lines += ["", "## Profile: where the time goes", "",
              "py-spy on the live processes in separate runs after the measured ones (same stack, same load); "
              "idle threads are not sampled, so shares are of the time spent running Python, not waiting.", ""]
    if meta.get("profiles_rerun"):
        pr = meta["profiles_rerun"]
        lines += [f"*Profiled in a separate run on {pr['date']} at commit `{pr['commit'][:12]}` "
                  f"({command_md(pr['command'])}).*", ""]
    for p in profiles:
        if p.get("error"):
            lines += [f"**{p['name']}**: no profile ({p['error']})", ""]
        else:
            lines += [profile.render(p["name"], p["what"], p["summary"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def merged(results: list[dict[str, Any]], saved: dict[str, Any]) -> list[dict[str, Any]]:
    """This run's results, and the saved report's for the benchmarks this run did not choose (marked)."""
    fresh = {r["key"] for r in results}
    old_meta = saved["meta"]
    kept = []
    for r in saved["results"]:
        if r["key"] in fresh:
            continue
        r = dict(r)
        r["not_rerun"] = r.get("not_rerun") or {"run_id": run_id(old_meta), "commit": old_meta["commit"],
                                                "date": old_meta["date"], "command": old_meta["command"]}
        kept.append(r)
    order = {b.key: k for k, b in enumerate(BENCHES)}
    return sorted([*results, *kept], key=lambda r: order.get(r["key"], len(order)))


def main() -> None:
    parser = argparse.ArgumentParser(description="run Keyturn's benchmarks and write bench/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="short durations (development); not for RESULTS.md")
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(b.key for b in BENCHES))
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--notes", type=Path, default=HERE / "NOTES.md",
                        help="hand-written notes on the misses, included in the report if the file exists")
    parser.add_argument("--merge", action="store_true",
                        help="keep the benchmarks not chosen with --only from the existing report's .json, each "
                             "marked as not re-run, with the run and commit it is from")
    parser.add_argument("--rerender", action="store_true",
                        help="measure nothing: rewrite the report from its .json (e.g. after editing the notes)")
    args = parser.parse_args()
    output = args.output or (HERE / ("RESULTS-quick.md" if args.quick else "RESULTS.md"))
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.rerender:
        saved = json.loads(output.with_suffix(".json").read_text())
        saved["meta"]["notes"] = args.notes.read_text() if args.notes.exists() else ""
        output.write_text(report(saved["results"], saved["profiles"], saved["meta"]))
        output.with_suffix(".json").write_text(json.dumps(saved, indent=1, default=str))
        print(f"bench: rewrote {output} from its .json (figures unchanged)")
        return
    chosen = [b for b in BENCHES if not args.only or b.key in args.only.split(",")]
    if not shutil.which("wrk") and any(b.key == "ack" for b in chosen):
        sys.exit("bench: wrk is missing (the ack benchmark's load generator): `apt-get install -y wrk` "
                 "or run `make bench`, which installs it")
    started = time.monotonic()
    loadavg_start = Path("/proc/loadavg").read_text().split()[:3]
    config = StackConfig()
    results: list[dict[str, Any]] = []
    profiles: list[dict[str, Any]] = []
    with Stack(config) as stack:
        speed_start = speed.measure({**os.environ, **stack.env()})
        for b in chosen:
            print(f"bench: {b.title} ...", flush=True)
            entry: dict[str, Any] = {"key": b.key, "title": b.title, "target": b.target}
            try:
                with BusySampler(stack.db_name) as sampler:
                    raw = b.run(stack, args.quick)
                entry.update(raw=raw, busy=sampler.result(), rendered=b.render(raw))
                entry["met"], entry["line"] = b.verdict(raw)
                entry["floor"] = floor.measure(stack.proxy_url)
                if b.headline is not None:
                    entry["headline_s"] = b.headline(raw)
                print(f"bench:   {'met' if entry['met'] else 'MISSED'}: {entry['line']} "
                      f"(machine busy {100 * entry['busy']['machine_busy']:.0f}%)", flush=True)
            except Exception:
                entry["error"] = traceback.format_exc()
                print(entry["error"], file=sys.stderr, flush=True)
            results.append(entry)
        if not args.no_profile:
            print("bench: profiles ...", flush=True)
            try:
                profiles = run_profiles(stack, args.quick, stack.workdir)
            except Exception:
                profiles = [{"name": "profiles", "error": traceback.format_exc()[-500:]}]
        for p in profiles:  # keep the raw py-spy output next to the report
            if p.get("file") and Path(p["file"]).exists():
                shutil.copy(p["file"], output.parent / f"{output.stem}-{Path(p['file']).name}")
        stack_desc = config.describe()
        speed_end = speed.measure({**os.environ, **stack.env()})
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick, "command": command_line(),
        "commit": _git("rev-parse", "HEAD"),
        "dirty": _git("status", "--porcelain", "--untracked-files=no", "--", "service", "workers").splitlines(),
        "machine": machine(), "speed_start": speed_start, "speed_end": speed_end,
        "stack": stack_desc, "tools": tool_versions(),
        "loadgen": (f"{tool_versions().get('wrk', 'wrk')} (Debian package `wrk`, C, 2 threads, with "
                    "bench/slack_requests.lua; `make bench` installs it when missing) for the ack benchmark; "
                    "Python `requests` threads for the click benchmarks"),
        "elapsed_s": time.monotonic() - started,
        "notes": args.notes.read_text() if args.notes and args.notes.exists() and not args.quick else "",
        "loadavg_start": " ".join(loadavg_start),
        "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
    meta["run_id"] = f"{str(meta['commit'])[:12]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M')}-{secrets.token_hex(2)}"
    if args.merge and output.with_suffix(".json").exists():
        results = merged(results, json.loads(output.with_suffix(".json").read_text()))
    output.write_text(report(results, profiles, meta))
    raw = {"meta": meta, "results": results,
           "profiles": [{k: v for k, v in p.items() if k != "file"} for p in profiles]}
    output.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
    print(f"bench: wrote {output} ({meta['elapsed_s'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
