"""SQLite: consecutive accepts of a group commit run in bulk, with the results of running them one by one."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.store.base import Accepted
from bridge.store.sqlite import _BULK_MAX, SqliteStore, _sizes
from tests.store.builders import SHA_C, delivery, new_job
from tests.store.test_sqlite import block_writer, db_path, store

__all__ = ["db_path", "store"]  # the SQLite store fixtures of test_sqlite.py, shared

pytestmark = pytest.mark.anyio


async def accept_in_one_batch(
    store: SqliteStore, items: list[tuple[DeliveryRecord, list[NewJob]]]
) -> list[Accepted | BaseException | None]:
    """Queue every accept behind a busy writer, so they run in as few batches as ``max_batch`` allows."""
    commits = store.commits
    release, busy = await block_writer(store)
    tasks = [asyncio.ensure_future(store.accept(d, jobs)) for d, jobs in items]
    await asyncio.sleep(0)
    release.set()
    await busy
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert store.commits == commits + 1 + -(-len(items) // 512)  # the busy body's, then the accepts'
    return results


def rows(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as connection:
        return connection.execute(sql).fetchall()


@pytest.mark.parametrize(
    ("count", "sizes"), [(0, []), (1, [1]), (25, [25]), (32, [32]), (33, [32, 1]), (100, [32, 32, 32, 4])]
)
def test_rows_go_in_one_statement_up_to_the_bulk_limit(count: int, sizes: list[int]) -> None:
    assert _sizes(count) == sizes


async def test_statement_shapes_stay_few_whatever_the_batch_sizes(store: SqliteStore) -> None:
    """Each multi-row statement text is prepared once and kept by the connection's statement cache, and
    a prepared statement grows with its rows: batches of every size from 1 to 80 must not leave a shape
    per size (``bench/statement_cache.py``: 90 MB after every size up to 512, with 256-row chunks)."""
    start = 0
    for size in range(1, 81):
        items = [(delivery(f"d-{start + i}"), [new_job(f"lane-{i % 3}")]) for i in range(size)]
        start += size
        assert await accept_in_one_batch(store, items) == [Accepted()] * size
    shapes: dict[str, set[int]] = {}
    for kind, rows_in_statement in store._sql:
        shapes.setdefault(kind, set()).add(rows_in_statement)
    assert shapes["jobs"] == shapes["deliveries"] == shapes["existing"] == set(range(1, _BULK_MAX + 1))


async def test_bulk_accept_equals_one_by_one(
    store: SqliteStore, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New deliveries, a redelivery of a stored one, a second copy within the batch, another hook with
    the same delivery id and several lanes: the results, rows, job order and lane due times of one by one."""
    assert await store.accept(delivery("stored"), [new_job("lane-a", due_at=50.0)])

    def one_by_one(*_: object) -> bool:
        raise AssertionError("the bulk path must not fall back here")

    monkeypatch.setattr("bridge.store.sqlite.t.accept", one_by_one)
    items = [
        (delivery("d-1"), [new_job("lane-a", due_at=300.0), new_job("lane-b", due_at=200.0)]),
        (delivery("stored"), [new_job("lane-c", due_at=1.0)]),  # redelivery: nothing stored
        (delivery("d-2"), [new_job("lane-b", due_at=150.0, after=SHA_C)]),
        (delivery("d-1"), [new_job("lane-d", due_at=1.0)]),  # second copy in this batch
        (delivery("d-1", hook_id="hook-2"), []),  # same GUID, another hook: a new delivery
        (delivery("d-3"), [new_job("lane-e", due_at=400.0)]),
    ]
    results = await accept_in_one_batch(store, items)
    assert results == [Accepted(), None, Accepted(), None, Accepted(), Accepted()]
    assert rows(db_path, "SELECT hook_id, delivery_id FROM deliveries ORDER BY rowid") == [
        ("hook-1", "stored"),
        ("hook-1", "d-1"),
        ("hook-1", "d-2"),
        ("hook-2", "d-1"),
        ("hook-1", "d-3"),
    ]
    assert rows(
        db_path, "SELECT delivery_id, lane, state, attempts, cancel_wanted FROM jobs ORDER BY id"
    ) == [
        ("stored", "lane-a", "queued", 0, 0),
        ("d-1", "lane-a", "queued", 0, 0),
        ("d-1", "lane-b", "queued", 0, 0),
        ("d-2", "lane-b", "queued", 0, 0),
        ("d-3", "lane-e", "queued", 0, 0),
    ]
    assert dict(rows(db_path, "SELECT lane, next_due FROM lanes")) == {
        "lane-a": 50.0,
        "lane-b": 150.0,
        "lane-e": 400.0,
    }
    stored = {job.delivery_id: job for job in await store.list_jobs(lane="lane-b")}
    assert stored["d-2"].after == SHA_C
    assert stored["d-2"].received_at == 100.0


def _not_one_by_one(*_: object) -> bool:
    raise AssertionError("the bulk path must not fall back here")


async def test_bulk_accepts_replace_on_arrival_as_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chained pushes in one batch (and one before it), a held lane, an earlier pushed_at, two pushes
    on one base: the same results (who replaced whom) and the same rows as running them one by one."""

    def push(lane: str, before: int, after: int, **changes: object) -> NewJob:
        return new_job(lane, before=f"{before:040x}", after=f"{after:040x}", **changes)

    items = [
        (delivery("d-1"), [push("lane-a", 1, 2), push("lane-b", 1, 2)]),
        (delivery("d-2"), [push("lane-a", 2, 3)]),  # replaces d-1's job in lane-a
        (delivery("d-3"), [push("lane-b", 2, 3, pushed_at=1)]),  # pushed before d-1's: left to the worker
        (delivery("d-4"), [push("lane-a", 3, 4), push("lane-held", 1, 2)]),  # lane-held: a worker holds it
        (delivery("d-5"), [push("lane-a", 3, 5)]),  # on the same base as d-4: d-2's job is replaced already
        (delivery("d-6"), [push("lane-a", 4, 6), push("lane-a", 5, 7)]),  # replace d-4's and d-5's
    ]
    outcomes = []
    for name in ("bulk", "one-by-one"):
        store = SqliteStore(tmp_path / f"{name}.db")
        await store.open()
        try:
            assert await store.accept(delivery("d-0"), [push("lane-a", 0, 1), push("lane-held", 0, 1)])
            await store.accept(delivery("d-h"), [push("lane-held", 5, 6, due_at=0.0)])
            assert await store.claim_lane(owner="w", now=100.0, lease=60.0) == "lane-held"
            if name == "bulk":
                with monkeypatch.context() as patch:
                    patch.setattr("bridge.store.sqlite.t.accept", _not_one_by_one)
                    results = await accept_in_one_batch(store, items)
            else:
                results = [await store.accept(d, jobs) for d, jobs in items]
        finally:
            await store.close()
        outcomes.append((results, _dump(tmp_path / f"{name}.db")))
    assert outcomes[0] == outcomes[1]
    results, (jobs, _) = outcomes[0]
    by_id = {row[0]: row for row in jobs}
    assert results == [
        Accepted((1,)),
        Accepted((4,)),
        Accepted(),
        Accepted((6,)),
        Accepted(),
        Accepted((8, 10)),
    ]
    assert {job_id for job_id, row in by_id.items() if "superseded" in row} == {1, 4, 6, 8, 10}


async def test_failing_accept_in_a_bulk_fails_alone(store: SqliteStore, db_path: Path) -> None:
    """When the bulk statements fail, the accepts run one by one: only the bad one fails."""
    bad = new_job("lane-x", route=None)  # NOT NULL violated: no such job can be stored
    items = [
        (delivery("d-1"), [new_job("lane-a")]),
        (delivery("d-2"), [bad]),
        (delivery("d-3"), [new_job("lane-a")]),
    ]
    results = await accept_in_one_batch(store, items)
    assert results[0] == Accepted()
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert results[2] == Accepted()
    assert rows(db_path, "SELECT delivery_id FROM deliveries ORDER BY rowid") == [("d-1",), ("d-3",)]
    assert rows(db_path, "SELECT delivery_id FROM jobs ORDER BY id") == [("d-1",), ("d-3",)]


async def test_large_batches_split_into_chunks(store: SqliteStore, db_path: Path) -> None:
    """More accepts than one statement holds (600 > 32 rows) are all stored, in arrival order."""
    items = [(delivery(f"d-{i}"), [new_job(f"lane-{i % 7}", due_at=float(1000 - i))]) for i in range(600)]
    results = await accept_in_one_batch(store, items)
    assert results == [Accepted()] * 600
    ids = [row[0] for row in rows(db_path, "SELECT delivery_id FROM jobs ORDER BY id")]
    assert ids == [f"d-{i}" for i in range(600)]
    assert store.requests == 601  # the busy body and each accept


async def _seed(store: SqliteStore) -> None:
    for i in range(12):
        assert await store.accept(delivery(f"d-{i}"), [new_job(f"lane-{i % 3}", due_at=100.0 + i)])
    assert await store.claim_lane(owner="w", now=200.0, lease=60.0) == "lane-0"


def _dump(path: Path) -> list[object]:
    return [
        rows(path, "SELECT * FROM jobs ORDER BY id"),
        rows(path, "SELECT * FROM lanes ORDER BY lane"),
    ]


@pytest.mark.parametrize(
    ("fields", "ids", "owner", "now"),
    [
        (
            {"state": "superseded", "error": "superseded by a newer push"},
            [1, 4, 7],
            "w",
            210.0,
        ),  # lane-0, held
        (
            {"state": "superseded", "error": "superseded by a newer push"},
            [1, 2, 4],
            "w",
            210.0,
        ),  # lane-1 not held
        ({"state": "superseded"}, [1, 4], "w", 999.0),  # the lease expired
        ({"state": "superseded"}, [1, 4], "someone-else", 210.0),
        ({"state": "queued", "due_at": 5.0}, [2, 3, 5, 99], None, 210.0),  # due again; 99 does not exist
        ({"cancel_wanted": True, "due_at": 7.0, "state": "done"}, [3, 6, 9], None, 210.0),
        ({"state": "active", "invocation_id": "inv-1", "poll_at": 300.0, "error": None}, [2, 5], None, 210.0),
        ({}, [1, 2], None, 210.0),
        ({"state": "superseded"}, [99, 100], "w", 210.0),  # no such jobs: nothing to fence, nothing done
    ],
)
async def test_bulk_apply_equals_one_by_one(
    tmp_path: Path, fields: dict[str, object], ids: list[int], owner: str | None, now: float
) -> None:
    """Updates that set the same fields run as one UPDATE, with the result, rows and lane due times
    of transactions.apply one update at a time."""
    from bridge.store.base import JobUpdate
    from bridge.store.sql import SqlStore

    outcomes = []
    for name, apply in (("bulk", SqliteStore.apply), ("one-by-one", SqlStore.apply)):
        store = SqliteStore(tmp_path / f"{name}.db")
        await store.open()
        try:
            await _seed(store)
            updates = [JobUpdate(job_id, dict(fields)) for job_id in ids]  # type: ignore[arg-type]
            result = await apply(store, updates, now=now, owner=owner)
        finally:
            await store.close()
        outcomes.append((result, _dump(tmp_path / f"{name}.db")))
    assert outcomes[0] == outcomes[1]


async def test_bulk_apply_checks_every_update_first(store: SqliteStore) -> None:
    """A bad update refuses the whole call before anything is written, as one by one."""
    from bridge.store.base import JobUpdate

    await _seed(store)
    with pytest.raises(ValueError, match="cannot be updated"):
        await store.apply([JobUpdate(1, {"lane": "x"}), JobUpdate(2, {"lane": "x"})], now=210.0)  # type: ignore[dict-item]
    assert {job.state for job in await store.list_jobs(limit=100)} == {"queued"}
