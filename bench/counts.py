"""What a scrape of ``/metrics`` costs the worker process once the store holds many jobs.

    .venv/bin/python bench/counts.py [--jobs 400000] [--rounds 3]

``/metrics`` reads the jobs per state from the store (``Store.counts``) at every scrape; in the worker
process, whose ``SqliteStore(on_loop=True)`` runs its requests on the event loop, a count that reads
every job row stops the loop for as long: every accept waits. This benchmark fills a new store in
``bench/results/`` with ``--jobs`` accepts of one job each (pushes that replace their lane's queued job,
``store_accept.delivery``; about 25 s for 400,000), then, ``--rounds`` times each, times two ways of
counting while a ticker on the same loop measures the longest the loop went without running it:

- ``writer, GROUP BY``: the count as it was until the twenty-fifth round, ``SELECT state, COUNT(*)
  FROM jobs GROUP BY state`` as one of the loop's requests;
- ``store.counts()``: as the store counts now (one pass of sums, on a connection of its own in a
  thread).

It prints each one's time, the loop's longest stall and the process's resident memory after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import rss_mb, scratch  # the benchmark helpers next door
from store_accept import delivery

from bridge.store.sqlite import SqliteStore
from bridge.store.transactions import Tx

GROUP_BY = "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"


async def fill(store: SqliteStore, jobs: int) -> None:
    for start in range(0, jobs, 32):
        await store.accept_many([delivery(index) for index in range(start, min(jobs, start + 32))])


async def longest_stall(count: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(seconds the count took, the longest gap between two runs of a 1 ms ticker meanwhile)."""
    loop = asyncio.get_running_loop()
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = loop.time()
        while running:
            await asyncio.sleep(0.001)
            now = loop.time()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await count()
    elapsed = time.perf_counter() - started
    running = False
    await task
    return elapsed, longest


async def measure(directory: Path, jobs: int, rounds: int) -> None:
    store = SqliteStore(directory / "bridge.db", on_loop=True)
    await store.open()
    started = time.perf_counter()
    await fill(store, jobs)
    print(f"{jobs:,} accepts stored in {time.perf_counter() - started:.1f} s; {rss_mb(os.getpid()):.1f} MB")

    def group_by(tx: Tx) -> list[object]:
        return list(tx.cursor.execute(GROUP_BY, {}).fetchall())

    ways: dict[str, Callable[[], Awaitable[object]]] = {
        "store.counts()": store.counts,
        "writer, GROUP BY": lambda: store._transact(group_by),
    }
    print(f"{'count':18} {'ms':>8} {'loop stalled ms':>16} {'RSS MB after':>13}")
    for _ in range(rounds):
        for name, count in ways.items():
            elapsed, stall = await longest_stall(count)
            print(f"{name:18} {elapsed * 1e3:8.1f} {stall * 1e3:16.1f} {rss_mb(os.getpid()):13.1f}")
    print("counts:", dict(await store.counts()))
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with scratch("counts-") as directory:
        asyncio.run(measure(directory, args.jobs, args.rounds))


if __name__ == "__main__":
    main()
