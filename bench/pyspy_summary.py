"""Summarise py-spy's raw (collapsed) output: where the sampled time goes, by function."""

from __future__ import annotations

import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def parse(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        stacks.append((frames.split(";"), int(count)))
    return stacks


def label(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    f = m["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in f:
            f = f.split(marker, 1)[1]
    return f"{m['func']} ({f})"


Ranked = list[tuple[str, int]]


def summarise(path: str, top: int = 25) -> tuple[int, Ranked, Ranked]:
    stacks = parse(path)
    total = sum(c for _, c in stacks)
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks:
        labels = [label(f) for f in frames]
        for name in set(labels):
            inclusive[name] += count
        if labels:
            own[labels[-1]] += count
    return total, inclusive.most_common(top), own.most_common(top)


if __name__ == "__main__":
    total, inc, own = summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 40)
    print("total samples", total)
    print("--- inclusive")
    for name, c in inc:
        print(f"{100*c/total:5.1f}%  {name}")
    print("--- self")
    for name, c in own:
        print(f"{100*c/total:5.1f}%  {name}")
