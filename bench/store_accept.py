"""How many durable accept() calls per second each store sustains under concurrent deliveries.

    .venv/bin/python bench/store_accept.py [--total 3000] [--concurrency 64] [--dir DIR] [--postgres URL]

Each of ``--concurrency`` clients (think: webhook requests in flight) accepts deliveries of one job
each, one after another, until ``--total`` are stored. Modes:

- ``sqlite-inline``: the anti-pattern DESIGN.md warns about: a synchronous SQLite commit per request,
  run inside the event loop (WAL, synchronous=FULL).
- ``sqlite-1``: SqliteStore with ``max_batch=1``: off the loop, but one commit (fsync) per request.
- ``sqlite``: SqliteStore as shipped for the ingress and the admin commands: one writer thread, group
  commit.
- ``sqlite-loop``: SqliteStore as the worker process runs it (``on_loop=True``): group commits on the
  event loop, the WAL fsynced by its ``WalSyncer``, SQLite's automatic checkpoints inside the commits
  (on the loop; ``bench/HISTORY.md``, eleventh round).
- ``postgres``: PostgresStore (pool of 10), on a scratch schema dropped afterwards; skipped when the
  server does not answer.

Every mode commits before accept() returns. The database files go to ``--dir`` (default: a temporary
directory next to this script, so on the same disk as the project, not on a tmpfs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.store import redact_url
from bridge.store import transactions as t
from bridge.store.postgres import PostgresStore
from bridge.store.queries import load_queries
from bridge.store.sqlite import SqliteStore
from bridge.store.transactions import Tx

Accept = Callable[[DeliveryRecord, list[NewJob]], Awaitable[bool]]


LANES = 50


def delivery(index: int) -> tuple[DeliveryRecord, list[NewJob]]:
    """Push ``index``: each of the 50 lanes gets a chain of pushes, each one's ``before`` the previous
    one's ``after``, as a branch's pushes are, so each push replaces the lane's queued job (the arrival
    rule). Until the eleventh round every ``before`` was zeros: nothing was replaced, queued jobs piled
    up in every lane and the arrival rule's join over them made the benchmark slower the longer it ran."""
    sha = f"{index:040x}"
    before = f"{index - LANES:040x}" if index >= LANES else "0" * 40
    record = DeliveryRecord("hook-1", f"delivery-{index}", "push", "acme/api", "refs/heads/main", sha, 1e9)
    job = NewJob(
        lane=f"lane-{index % LANES}",
        route="route-0",
        source_key="src",
        source_id="5d6c1f0e-0000-4000-8000-000000000001",
        source_spec=None,
        repository="acme/api",
        repository_id=1,
        branch="main",
        before=before,
        after=sha,
        pushed_at=None,
        collection=f"acme-api-main-{sha[:12]}",
        due_at=1e9 + 5,
    )
    return record, [job]


async def drive(accept: Accept, *, total: int, concurrency: int) -> tuple[float, list[float]]:
    """Run the clients; (elapsed seconds, per-accept latencies)."""
    counter = iter(range(total))
    latencies: list[float] = []

    async def client() -> None:
        for index in counter:
            record, jobs = delivery(index)
            started = time.perf_counter()
            if not await accept(record, jobs):
                raise RuntimeError(f"delivery {index} was refused")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


def report(mode: str, elapsed: float, latencies: list[float], extra: str = "") -> None:
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{mode:<14} {len(latencies) / elapsed:>9.0f} accepts/s   p50 {quantiles[49] * 1e3:7.2f} ms"
        f"   p99 {quantiles[98] * 1e3:7.2f} ms   max {max(latencies) * 1e3:7.2f} ms   {extra}",
        flush=True,
    )


async def sqlite_inline(path: Path, *, total: int, concurrency: int) -> None:
    # The store migrates the file; then a plain connection commits inside the event loop.
    store = SqliteStore(path)
    await store.open()
    await store.close()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    queries = load_queries("sqlite")

    async def accept(record: DeliveryRecord, jobs: list[NewJob]) -> bool:
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        result = t.accept(Tx(cursor, queries), record, jobs)
        cursor.execute("COMMIT")
        await asyncio.sleep(0)  # a request handler yields somewhere
        return result

    elapsed, latencies = await drive(accept, total=total, concurrency=concurrency)
    connection.close()
    report("sqlite-inline", elapsed, latencies, f"commits {total}")


async def sqlite_store(
    mode: str, path: Path, *, max_batch: int, total: int, concurrency: int, on_loop: bool = False
) -> None:
    store = SqliteStore(path, max_batch=max_batch, on_loop=on_loop)
    await store.open()
    try:
        elapsed, latencies = await drive(store.accept, total=total, concurrency=concurrency)
        report(mode, elapsed, latencies, f"commits {store.commits} ({total / store.commits:.1f} per commit)")
    finally:
        await store.close()


async def postgres_store(url: str, *, total: int, concurrency: int) -> None:
    import psycopg  # only this mode needs the driver itself

    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.Error as error:
        print(f"{'postgres':<14} skipped: {redact_url(url)} unreachable ({type(error).__name__})")
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    scoped = f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={schema}', safe='')}"
    store = PostgresStore(scoped, max_size=10)
    try:
        await store.open()
        elapsed, latencies = await drive(store.accept, total=total, concurrency=concurrency)
        report("postgres", elapsed, latencies, "pool 10")
    finally:
        await store.close()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--total", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--modes", default="sqlite-inline,sqlite-1,sqlite,sqlite-loop,postgres")
    args = parser.parse_args()
    modes = args.modes.split(",")
    print(
        f"{args.total} accepts, {args.concurrency} concurrent clients, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir or Path(__file__).parent, prefix="store-bench-") as tmp:
        folder = Path(tmp)
        kwargs = {"total": args.total, "concurrency": args.concurrency}
        if "sqlite-inline" in modes:
            await sqlite_inline(folder / "inline.db", **kwargs)
        if "sqlite-1" in modes:
            await sqlite_store("sqlite-1", folder / "single.db", max_batch=1, **kwargs)
        if "sqlite" in modes:
            await sqlite_store("sqlite", folder / "group.db", max_batch=512, **kwargs)
        if "sqlite-loop" in modes:
            await sqlite_store("sqlite-loop", folder / "loop.db", max_batch=512, on_loop=True, **kwargs)
        if "postgres" in modes:
            await postgres_store(args.postgres, **kwargs)


if __name__ == "__main__":
    asyncio.run(main())
