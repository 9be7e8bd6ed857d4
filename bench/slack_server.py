"""The fake Slack Web API (tests/support/slack_fake.py) in a process of its own, for the benchmarks.

It answers like Slack and counts calls; recorded calls are dropped every few seconds so a long run does
not grow its memory. `GET /__bench/stats` answers {"calls": N, "by_method": {...}}.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from typing import Any

from tests.support.slack_fake import FakeSlack, SlackCall


class BenchSlack(FakeSlack):
    def __init__(self, port: int, token: str):
        super().__init__(port=port, token=token)
        self.counts: Counter[str] = Counter()
        self.on("/__bench/stats", self._stats)

    def _handler_class(self) -> Any:
        # Like the proxy: headers and body are two writes, so without TCP_NODELAY every call waits ~40 ms
        # for a delayed ACK. Real Slack is slower than either; see RESULTS.md.
        handler = super()._handler_class()
        handler.disable_nagle_algorithm = True
        return handler

    def _stats(self, _call: SlackCall) -> dict[str, Any]:
        with self._lock:
            self._drain()
            return {"ok": True, "calls": sum(self.counts.values()), "by_method": dict(self.counts)}

    def _drain(self) -> None:
        for call in self._calls:
            self.counts[call.method] += 1
        self._calls.clear()

    def drain_forever(self, every: float = 2.0) -> None:
        while True:
            time.sleep(every)
            with self._lock:
                self._drain()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="xoxb-bench")
    args = parser.parse_args()
    fake = BenchSlack(args.port, args.token).start()
    assert isinstance(fake, BenchSlack)
    threading.Thread(target=fake.drain_forever, daemon=True).start()
    print(json.dumps({"listening": fake.root_url}), flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
