"""Where one group commit of the worker process's store spends its time, statement by statement.

    .venv/bin/python bench/commit_breakdown.py [--commits 4000] [--batch 10] [--drop-index NAME]

``SqliteStore(on_loop=True)`` (the worker process's store, its ``WalSyncer`` included) on a new
database in ``bench/results/``, fed ``--commits`` batches of ``--batch`` accepts, each a push that
replaces its lane's queued job (``store_accept.delivery``: 50 lanes, chains of pushes) under a random
delivery id, as under ``bench/ingress.py``'s wrk load (~10 accepts per commit). Each statement's time
is taken around ``cursor.execute`` by a proxy of the store's connection; the rest of a commit's time
(from ``BEGIN`` to the end of ``COMMIT``, the store's own ``on_commit``) is Python. ``--drop-index``
drops an index after the migrations, to price what it costs (an experiment, never a setting).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from store_accept import delivery  # the benchmark next door

from bridge.store.sqlite import SqliteStore

Totals = collections.defaultdict[str, list[float]]


class TimedCursor:
    """A cursor whose ``execute`` adds its duration to ``totals`` under the statement's first words."""

    def __init__(self, cursor: sqlite3.Cursor, totals: Totals) -> None:
        self._cursor = cursor
        self._totals = totals

    def execute(self, sql: str, parameters: Any = ()) -> sqlite3.Cursor:
        started = time.perf_counter()
        try:
            return self._cursor.execute(sql, parameters)
        finally:
            entry = self._totals[" ".join(sql.split()[:3])[:40]]
            entry[0] += 1
            entry[1] += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class TimedConnection:
    def __init__(self, connection: sqlite3.Connection, totals: Totals) -> None:
        self._connection = connection
        self._totals = totals

    def cursor(self) -> TimedCursor:
        return TimedCursor(self._connection.cursor(), self._totals)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


async def measure(commits: int, batch: int, drop: list[str], directory: str) -> None:
    store = SqliteStore(Path(directory) / "bridge.db", on_loop=True)
    durations: list[float] = []
    store.on_commit = lambda seconds, requests: durations.append(seconds)
    await store.open()
    assert store._connection is not None
    for index in drop:
        store._connection.execute(f"DROP INDEX {index}")
    totals: Totals = collections.defaultdict(lambda: [0, 0.0])
    store._connection = TimedConnection(store._connection, totals)  # type: ignore[assignment]
    pushes = 0
    for _ in range(commits):
        accepts = []
        for _ in range(batch):
            record, jobs = delivery(pushes)
            pushes += 1
            accepts.append((replace(record, delivery_id=str(uuid.uuid4())), jobs))
        await store.accept_many(accepts)
    await store.close()
    total = sum(durations)
    print(f"{len(durations)} commits of {batch} accepts: {total / len(durations) * 1e3:.3f} ms each")
    per = len(durations)
    print(f"{'statement':42} {'per commit':>10} {'us':>8} {'share':>6}")
    for name, (count, seconds) in sorted(totals.items(), key=lambda item: -item[1][1]):
        print(f"{name:42} {count / per:10.1f} {seconds / per * 1e6:8.1f} {seconds / total:6.1%}")
    rest = total - sum(seconds for _, seconds in totals.values())
    print(f"{'(Python between the statements)':42} {'':10} {rest / per * 1e6:8.1f} {rest / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--drop-index", action="append", default=[])
    args = parser.parse_args()
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=results, prefix="commit-") as directory:
        asyncio.run(measure(args.commits, args.batch, args.drop_index, directory))


if __name__ == "__main__":
    main()
