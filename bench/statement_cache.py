"""What the worker process's store keeps in memory for its multi-row statements, once it has seen
batches of every size.

    .venv/bin/python bench/statement_cache.py [--max 512] [--rounds 2]

The group commit writes a batch of accepts as one multi-row statement per kind (``SqliteStore.
_insert_accepts``), and applies of the same fields as ``UPDATE ... WHERE id IN (...)``: one statement
text per number of rows, up to the store's chunk size, each prepared once and kept in the connection's
statement cache. A prepared statement's size grows with its rows (a jobs ``INSERT`` of 256 rows holds
~4,000 parameters), so a worker that has met every batch size keeps every shape: under a steady load
the batches stay small, but bursts and backlogs (GitHub's redeliveries, a stalled disk, a restart's
queue) bring the large ones, and the memory stays. This benchmark is that worker:
``SqliteStore(on_loop=True)`` on a new database in ``bench/results/``, fed ``--rounds`` sweeps of
``accept_many`` with every batch size from 1 to ``--max`` (pushes that replace their lane's queued job,
``store_accept.delivery``), each followed by one ``apply`` of as many same-field updates (the worker
superseding that many jobs). It prints this process's resident memory after opening the store and
after each sweep, the statement shapes the store built, and the time per accept of each sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import rss_mb, scratch  # the benchmark helpers next door
from store_accept import delivery

from bridge.store.base import JobUpdate
from bridge.store.sqlite import SqliteStore


async def measure(directory: Path, largest: int, rounds: int) -> None:
    store = SqliteStore(directory / "bridge.db", on_loop=True)
    await store.open()
    pid = os.getpid()
    print(f"after opening the store: {rss_mb(pid):.1f} MB")
    pushes = 0
    for sweep in range(1, rounds + 1):
        started = time.perf_counter()
        accepted = 0
        for size in range(1, largest + 1):
            accepts = [delivery(pushes + offset) for offset in range(size)]
            pushes += size
            results = await store.accept_many(accepts)
            accepted += sum(result is not None for result in results)
            ids = [job.id for job in await store.list_jobs(limit=size)]
            updates = [JobUpdate(job_id, {"error": f"sweep {sweep}"}) for job_id in ids]
            await store.apply(updates, now=time.time(), owner=None)
        elapsed = time.perf_counter() - started
        print(
            f"sweep {sweep}: {accepted:,} accepts in batches of 1 to {largest},"
            f" {elapsed / accepted * 1e6:.0f} us each; {rss_mb(pid):.1f} MB;"
            f" {len(store._sql)} accept statement shapes"
        )
    await store.close()
    print(f"after closing the store: {rss_mb(pid):.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=512, help="the largest batch (the store's max_batch)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with scratch("statements-") as directory:
        asyncio.run(measure(directory, args.max, args.rounds))


if __name__ == "__main__":
    main()
