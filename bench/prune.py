"""How long the pruner holds the store: everything past retention in one transaction, against batches.

    .venv/bin/python bench/prune.py [--rows 20000] [--batch 500]

The worker process's store (``SqliteStore(on_loop=True)``, its ``WalSyncer`` included) on a new database
in ``bench/results/``, filled with ``--rows`` deliveries of one job each over 50 lanes, the jobs
superseded, everything older than the cut. Then, on two copies of that database, the pruner's work:
one ``prune`` call without a limit (what the worker did until the twenty-second round), and calls of
``limit=--batch`` until one deletes fewer (what ``Worker.prune_once`` does). With SQLite every other
request waits for the transaction before it, so the longest transaction is how long the answers to
deliveries arriving meanwhile wait. Prints both; writes ``bench/results/prune-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH, scratch_dir
from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.store.base import JobUpdate, Store
from bridge.store.sqlite import SqliteStore
from bridge.worker import PRUNE_BATCH

NOW = 1_000_000.0
T = TypeVar("T")


async def fill(
    store: SqliteStore, *, count: int, now: float, day: int = 0, superseded_at: float | None = None
) -> None:
    """Accept ``count`` deliveries received at ``now``, one job each over 50 lanes, then mark the jobs
    still queued superseded at ``superseded_at`` (``now``): rows the pruner may take once its cut
    passes both (``bench/memory.py`` fills each simulated ``day`` this way too)."""
    for start in range(0, count, 500):
        accepts = []
        for index in range(start, min(count, start + 500)):
            sha = f"{day:08x}{index:032x}"
            record = DeliveryRecord("1", f"d{day}-{index}", "push", "acme/api", "refs/heads/main", sha, now)
            job = NewJob(
                lane=f"lane-{index % 50}", route="r", source_key="src", source_id=None,
                source_spec='{"database_name":"code"}', repository="acme/api", repository_id=1,
                branch="main", before="0" * 40, after=sha, pushed_at=None,
                collection=f"acme-api-main-{sha[:12]}", due_at=now,
            )  # fmt: skip
            accepts.append(store.accept(record, [job]))
        await asyncio.gather(*accepts)
    queued = [job.id for job in await store.list_jobs(limit=count * 2) if job.state == "queued"]
    for offset in range(0, len(queued), 500):
        updates = [JobUpdate(i, {"state": "superseded"}) for i in queued[offset : offset + 500]]
        await store.apply(updates, now=now if superseded_at is None else superseded_at)


async def prune_in_batches(store: Store, *, before: float, limit: int | None) -> dict[str, Any]:
    """Prune what is older than ``before``: ``prune(limit=)`` until a call deletes fewer than
    ``limit`` (``Worker.prune_once``, without its pauses), or one call (``limit`` None). The deleted
    counts, the transactions, the seconds in all and the longest transaction's."""
    deleted, transactions, longest = [0, 0], 0, 0.0
    started = time.perf_counter()
    while True:
        begun = time.perf_counter()
        batch = await store.prune(deliveries_before=before, jobs_before=before, limit=limit)
        longest = max(longest, time.perf_counter() - begun)
        deleted = [deleted[0] + batch[0], deleted[1] + batch[1]]
        transactions += 1
        if limit is None or max(batch) < limit:
            break
    return {
        "limit": limit,
        "deleted": deleted,
        "transactions": transactions,
        "seconds": time.perf_counter() - started,
        "longest_s": longest,
    }


async def on_store(path: Path, work: Callable[[SqliteStore], Awaitable[T]]) -> T:
    """``work`` on the worker process's store of the file at ``path``, opened and closed around it."""
    store = SqliteStore(path, on_loop=True)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


async def run(rows: int, batch: int) -> list[dict[str, Any]]:
    folder = scratch_dir("prune-")
    filled = folder / "filled.db"
    await on_store(filled, lambda store: fill(store, count=rows, now=NOW))
    results = []
    for limit in (None, batch):
        copy = folder / f"prune-{limit}.db"
        shutil.copyfile(filled, copy)
        results.append(
            await on_store(
                copy, lambda store, limit=limit: prune_in_batches(store, before=NOW + 1, limit=limit)
            )
        )
    shutil.rmtree(folder, ignore_errors=True)
    return results


def main() -> None:
    # Filling the database commits 500 accepts at a time, which the store logs as slow: not the subject.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="deliveries (and as many jobs) to prune")
    parser.add_argument("--batch", type=int, default=PRUNE_BATCH, help="the worker's PRUNE_BATCH")
    args = parser.parse_args()
    results = asyncio.run(run(args.rows, args.batch))
    for result in results:
        how = "one transaction" if result["limit"] is None else f"batches of {result['limit']}"
        per_row = 1e6 * result["seconds"] / max(1, sum(result["deleted"]))
        print(
            f"{how:>18}: {result['deleted'][0]} deliveries and {result['deleted'][1]} jobs in"
            f" {result['transactions']} transaction(s), {result['seconds']:.3f} s in all ({per_row:.1f} us a"
            f" row), the longest {1e3 * result['longest_s']:.1f} ms"
        )
    out = BENCH / "results" / "prune-latest.json"
    out.write_text(json.dumps({"rows": args.rows, "results": results}, indent=2))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
