"""Where one group commit of the worker process's store spends its time, statement by statement.

    .venv/bin/python bench/commit_breakdown.py [--commits 4000] [--batch 10] [--drop-index NAME]
        [--ids random]

``SqliteStore(on_loop=True)`` (the worker process's store, its ``WalSyncer`` included) on a new
database in ``bench/results/``, fed ``--commits`` batches of ``--batch`` accepts, each a push that
replaces its lane's queued job (``store_accept.delivery``: 50 lanes, chains of pushes) under a new
delivery id, as under ``bench/ingress.py``'s wrk load (~10 accepts per commit). The ids are GitHub's
kind, version-1 UUIDs (``uuid.uuid1()``): GitHub's own example, ``58474f00-b361-11eb-836d-0e4f3503ccbe``,
holds the time of its ``delivered_at``. Their text starts with the clock's low 32 bits, which count up
for 429 s before they wrap, so the deliveries of one commit sit side by side in the index that finds
redeliveries, as the wrk load's ids do. ``--ids random`` (version 4, what this benchmark used until the
sixteenth round) puts each on a page of its own: 13 of 36-38 pages a commit wrote to the WAL, against
2.4-2.6 of 27.5-27.7 (``bench/HISTORY.md``). Since SQLite migration 0005 (seventeenth round) a commit
writes 15.6 pages: the (lane, id) index, 12.7 of the 27.5, is gone. Each statement's time
is taken around ``cursor.execute`` by a proxy of the store's connection; the rest of a commit's time
(from ``BEGIN`` to the end of ``COMMIT``, the store's own ``on_commit``) is Python. ``--drop-index``
drops an index after the migrations, to price what it costs (an experiment, never a setting);
``--drop-index trigger:NAME`` drops a trigger instead (``jobs_chain``, ``jobs_lane_exists``: what
each job row's insert runs besides itself; the chain they keep is then wrong, the timing is not). Then
(``--frames``, 200 by default) the pages the next commits write to the WAL, by table and index: a
count, not a time, so it is the same on a busy VM as on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch  # the benchmark helpers next door
from store_accept import delivery

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


async def measure(commits: int, batch: int, drop: list[str], directory: Path, ids: str, frames: int) -> None:
    new_id = uuid.uuid4 if ids == "random" else uuid.uuid1
    path = directory / "bridge.db"
    store = SqliteStore(path, on_loop=True)
    durations: list[float] = []
    store.on_commit = lambda seconds, requests: durations.append(seconds)
    await store.open()
    connection = store._connection
    assert connection is not None
    for index in drop:
        kind = "TRIGGER" if index.startswith("trigger:") else "INDEX"
        connection.execute(f"DROP {kind} {index.removeprefix('trigger:')}")
    totals: Totals = collections.defaultdict(lambda: [0, 0.0])
    store._connection = TimedConnection(connection, totals)  # type: ignore[assignment]
    pushes = 0

    async def commit() -> None:
        nonlocal pushes
        accepts = []
        for _ in range(batch):
            record, jobs = delivery(pushes)
            pushes += 1
            accepts.append((record._replace(delivery_id=str(new_id())), jobs))
        await store.accept_many(accepts)

    for _ in range(commits):
        await commit()
    total = sum(durations)
    print(f"{len(durations)} commits of {batch} accepts: {total / len(durations) * 1e3:.3f} ms each")
    per = len(durations)
    print(f"{'statement':42} {'per commit':>10} {'us':>8} {'share':>6}")
    for name, (count, seconds) in sorted(totals.items(), key=lambda item: -item[1][1]):
        print(f"{name:42} {count / per:10.1f} {seconds / per * 1e6:8.1f} {seconds / total:6.1%}")
    rest = total - sum(seconds for _, seconds in totals.values())
    print(f"{'(Python between the statements)':42} {'':10} {rest / per * 1e6:8.1f} {rest / total:6.1%}")
    if frames:
        # The pages each commit writes to the WAL, by b-tree: with checkpoints off, the WAL after
        # ``frames`` more commits holds one frame per page each commit changed (its header names the
        # page); ``dbstat`` names each page's table or index. A count, the same every run.
        connection.execute("PRAGMA wal_autocheckpoint=0")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for _ in range(frames):
            await commit()
        pages = wal_pages(Path(f"{path}-wal"))
        try:
            owner = dict(connection.execute("SELECT pageno, name FROM dbstat"))
        except sqlite3.Error as error:
            print(f"no dbstat in this SQLite ({error}): {len(pages) / frames:.1f} pages per commit")
        else:
            print(f"\npages written to the WAL per commit: {len(pages) / frames:.1f}")
            for name, count in collections.Counter(owner.get(page, "?") for page in pages).most_common():
                print(f"  {name:40} {count / frames:5.2f}")
    await store.close()


def wal_pages(wal: Path) -> list[int]:
    """The page number of every frame in a WAL file (https://sqlite.org/fileformat.html#walformat)."""
    data = wal.read_bytes()
    page_size = int.from_bytes(data[8:12], "big")
    return [
        int.from_bytes(data[offset : offset + 4], "big")
        for offset in range(32, len(data) - 23, 24 + page_size)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--drop-index", action="append", default=[], help="an index, or trigger:NAME")
    parser.add_argument("--ids", choices=("github", "random"), default="github", help="uuid1 or uuid4")
    parser.add_argument("--frames", type=int, default=200, help="commits whose pages are counted")
    args = parser.parse_args()
    with scratch("commit-") as directory:
        asyncio.run(measure(args.commits, args.batch, args.drop_index, directory, args.ids, args.frames))


if __name__ == "__main__":
    main()
