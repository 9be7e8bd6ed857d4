"""An open-loop HTTP load generator (wrk2-like): requests are sent at fixed times, whatever the server does.

`wrk` is closed-loop (each connection sends its next request when the previous answer arrives), so a slow
server slows the load and its own tail is hidden (coordinated omission). Here request i is due at
`start + i / rate`; it is sent on an idle keep-alive connection (a new one is opened when none is idle,
up to `--max-connections`), and its latency is measured **from its scheduled time** to the end of its
answer, so a stall delays, and is charged to, every request due during it.

Runs as its own process (asyncio, one thread), reading the same file of pre-signed requests as
bench/slack_requests.lua (timestamp, signature, body per line), and prints one `OPENJSON {...}` line with
the figures in microseconds, like the wrk script's `WRKJSON` line.

    python -m bench.open_loop --url http://127.0.0.1:8000/slack/events --rate 200 --duration 60 \\
        --requests requests.txt --expect "Filing your request"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.measure import percentile


class Counts:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.connect = self.read = self.timeout = self.bad = 0
        self.send_lag: list[float] = []  # how late the generator itself started each send
        self.bad_sample = ""
        self.opened = 0
        self.stale = 0  # idle connections the server had closed, dropped before reuse


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


async def _one(url: tuple[str, int, str], raw: bytes, expect: bytes, due: float, idle: list[
        tuple[asyncio.StreamReader, asyncio.StreamWriter]], counts: Counts, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    counts.send_lag.append(loop.time() - due)
    host, port, _ = url
    try:
        while idle and (idle[-1][0].at_eof() or idle[-1][1].is_closing()):
            # The server closed it while it sat idle (gunicorn's keep-alive timeout): an HTTP client checks a
            # pooled connection before reusing it (urllib3's is_connection_dropped) instead of failing a request.
            idle.pop()[1].close()
            counts.stale += 1
        if idle:
            reader, writer = idle.pop()
        else:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                counts.opened += 1
            except (OSError, TimeoutError):
                counts.connect += 1
                return
        writer.write(raw)
        status, body, close = await asyncio.wait_for(_read_answer(reader), timeout)
    except TimeoutError:
        counts.timeout += 1
        return
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        counts.read += 1
        return
    counts.latencies.append(loop.time() - due)
    if status != 200 or expect not in body:
        counts.bad += 1
        counts.bad_sample = counts.bad_sample or f"{status} {body[:200]!r}"
    if close:
        writer.close()
    else:
        idle.append((reader, writer))


def _requests(path: Path, host: str, path_part: str) -> list[bytes]:
    out = []
    for line in path.read_text().splitlines():
        stamp, signature, body = line.split("\t", 2)
        data = body.encode()
        out.append((f"POST {path_part} HTTP/1.1\r\nHost: {host}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"X-Slack-Request-Timestamp: {stamp}\r\nX-Slack-Signature: {signature}\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n").encode() + data)
    return out


async def drive(url: str, requests_file: Path, rate: float, duration: float, expect: str,
                timeout: float = 30.0) -> dict[str, float | int | str]:
    parts = urlsplit(url)
    target = (parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/")
    raws = _requests(requests_file, f"{target[0]}:{target[1]}", target[2])
    total = int(rate * duration)
    if total > len(raws):
        raise SystemExit(f"{len(raws)} signed requests for {total} sends: sign more")
    counts = Counts()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_one(target, raws[i], expect.encode(), due, idle, counts, timeout)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    for _, writer in idle:
        writer.close()
    lat = sorted(counts.latencies)
    lag = sorted(counts.send_lag)
    us = 1e6
    return {"requests": len(lat), "scheduled": total, "rate": rate, "duration_us": int(elapsed * us),
            "p50": percentile(lat, 50) * us, "p90": percentile(lat, 90) * us, "p99": percentile(lat, 99) * us,
            "max": (lat[-1] if lat else float("nan")) * us, "connect": counts.connect, "read": counts.read,
            "write": 0, "timeout": counts.timeout, "bad": counts.bad, "bad_sample": counts.bad_sample,
            "connections_opened": counts.opened, "stale_dropped": counts.stale,
            "send_lag_p99_us": percentile(lag, 99) * us, "send_lag_max_us": (lag[-1] if lag else 0.0) * us}


def main() -> None:
    parser = argparse.ArgumentParser(description="open-loop (constant-rate) load, latency from the scheduled time")
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--expect", default="")
    args = parser.parse_args()
    started = time.time()
    result = asyncio.run(drive(args.url, args.requests, args.rate, args.duration, args.expect))
    result["wall_s"] = time.time() - started
    print("OPENJSON " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
