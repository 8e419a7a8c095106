"""Summarise py-spy's collapsed stacks (``--format raw``): where the samples of each thread went.

    .venv/bin/python bench/spy_summary.py PROFILE.txt [--top 40]

Prints, per thread of each process (with ``--profile-children`` a child's stacks start with its
parent's frame, so the innermost ``process`` frame names the process), the share of samples whose stack
contains each function ("inclusive"), and the share in which it is the innermost frame ("self"), so one
can see both what a request costs end to end (Litestar routing, the handler, logging, metrics) and where
the time finally goes.

py-spy counts some waiting threads as active: the worker process's ``uvloop_0`` (uvloop's executor, idle
in ``SimpleQueue.get``) shows samples but uses no CPU (``bench/HISTORY.md``, twenty-third round).
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

_HEAD = re.compile(r"process \d+:|thread \(\d+\)")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def where(frames: list[str]) -> tuple[str, list[str]]:
    """The stack's process and thread (as one name), and the frames below them.

    py-spy's own frames lead a stack (``process PID:"cmd"``, one per generation, then ``thread (TID)``);
    only that leading run counts, so a function named ``process`` further down is a function.
    """
    heads = 0
    while heads < len(frames) and _HEAD.match(frames[heads]):
        heads += 1
    if not heads:
        return frames[0], frames[1:]
    lead = frames[:heads]
    processes = [frame for frame in lead if frame.startswith("process ")]
    threads = [frame for frame in lead if frame.startswith("thread ")]
    return " / ".join([*processes[-1:], *threads[-1:]]), frames[heads:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--thread", default=None, help="only threads whose name contains this")
    args = parser.parse_args()
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, body = where(frames)
        if args.thread and args.thread not in thread:
            continue
        names = [short(f) for f in body]
        totals[thread] += count
        for name in set(names):
            inclusive[thread][name] += count
        if names:
            own[thread][names[-1]] += count
    for thread, total in totals.most_common():
        print(f"\n== {thread}: {total} samples")
        print("   incl%   self%  function")
        for name, count in inclusive[thread].most_common(args.top):
            print(f"  {100 * count / total:5.1f}  {100 * own[thread][name] / total:6.1f}  {name}")


if __name__ == "__main__":
    main()
