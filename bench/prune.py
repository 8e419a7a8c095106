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
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH, scratch_dir
from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.store.base import JobUpdate
from bridge.store.sqlite import SqliteStore
from bridge.worker import PRUNE_BATCH

NOW = 1_000_000.0


async def fill(path: Path, rows: int) -> None:
    store = SqliteStore(path, on_loop=True)
    await store.open()
    try:
        for start in range(0, rows, 500):
            accepts = []
            for i in range(start, min(rows, start + 500)):
                sha = f"{i:040x}"
                record = DeliveryRecord(
                    hook_id="1", delivery_id=f"d-{i}", event="push", repository="acme/api",
                    ref="refs/heads/main", after=sha, received_at=NOW,
                )  # fmt: skip
                job = NewJob(
                    lane=f"lane-{i % 50}", route="r", source_key="src", source_id=None,
                    source_spec='{"database_name":"code"}', repository="acme/api", repository_id=1,
                    branch="main", before="0" * 40, after=sha, pushed_at=None,
                    collection=f"acme-api-main-{sha[:12]}", due_at=NOW,
                )  # fmt: skip
                accepts.append(store.accept(record, [job]))
            await asyncio.gather(*accepts)
        queued = [job.id for job in await store.list_jobs(limit=rows * 2) if job.state == "queued"]
        for offset in range(0, len(queued), 500):
            updates = [JobUpdate(i, {"state": "superseded"}) for i in queued[offset : offset + 500]]
            await store.apply(updates, now=NOW)
    finally:
        await store.close()


async def prune(path: Path, limit: int | None) -> dict[str, Any]:
    store = SqliteStore(path, on_loop=True)
    await store.open()
    try:
        deleted, transactions, longest = [0, 0], 0, 0.0
        started = time.perf_counter()
        while True:
            before = time.perf_counter()
            batch = await store.prune(deliveries_before=NOW + 1, jobs_before=NOW + 1, limit=limit)
            longest = max(longest, time.perf_counter() - before)
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
    finally:
        await store.close()


async def run(rows: int, batch: int) -> list[dict[str, Any]]:
    folder = scratch_dir("prune-")
    filled = folder / "filled.db"
    await fill(filled, rows)
    results = []
    for limit in (None, batch):
        copy = folder / f"prune-{limit}.db"
        shutil.copyfile(filled, copy)
        results.append(await prune(copy, limit))
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
