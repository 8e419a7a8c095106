"""SQLite store specifics: durability, the writer thread, group commit and savepoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.core.errors import ConfigError
from bridge.core.jobs import JobState
from bridge.store import migrate, queries
from bridge.store.base import JobUpdate
from bridge.store.migrate import load_migrations
from bridge.store.queries import Queries, parse_blocks
from bridge.store.sqlite import SqliteStore
from bridge.store.transactions import Tx
from tests.store.builders import delivery, new_job

pytestmark = pytest.mark.anyio

# The lane reads through the (lane, id) index, as before SQLite migration 0005 (PostgreSQL's still).
_BLOCKS = parse_blocks((Path(queries.__file__).parent / "queries.sql").read_text(encoding="utf-8"))
INDEX_READS = {"lane_history": _BLOCKS[("lane_history", None)]}  # lane_jobs reads through it


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bridge.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path)
    await store.open()
    yield store
    await store.close()


def pragma(name: str) -> Callable[[Tx], object]:
    """A body that reads one PRAGMA on the writer's connection."""

    def body(tx: Tx) -> object:
        tx.cursor.execute(f"PRAGMA {name}", {})
        return tx.cursor.fetchall()[0][0]

    return body


async def block_writer(store: SqliteStore) -> tuple[threading.Event, asyncio.Future[None]]:
    """Occupy the writer thread until the returned event is set."""
    started, release = threading.Event(), threading.Event()

    def body(tx: Tx) -> None:
        started.set()
        release.wait(10)

    busy = asyncio.ensure_future(store._transact(body))
    await asyncio.to_thread(started.wait, 10)
    return release, busy


async def test_accepted_delivery_survives_reopening(db_path: Path) -> None:
    """What accept() returned True for is there after the process closes and reopens the file."""
    first = SqliteStore(db_path)
    await first.open()
    assert await first.accept(delivery(), [new_job()])
    await first.close()
    second = SqliteStore(db_path)
    await second.open()
    try:
        assert [job.lane for job in await second.list_jobs()] == ["lane-1"]
        assert not await second.accept(delivery(), [new_job()])
    finally:
        await second.close()


async def test_connection_is_durable_wal_with_foreign_keys(store: SqliteStore, db_path: Path) -> None:
    """WAL journal, synchronous=FULL (2) and temporary storage in memory (2: statement journals are no
    temporary files), on the writer's connection. jobs.lane's foreign key is kept by triggers
    (migration 0005), not by SQLite's check, which is off: a job for a lane that does not exist is
    refused all the same, and nothing of its transaction is stored."""
    assert await store._transact(pragma("synchronous")) == 2
    assert await store._transact(pragma("temp_store")) == 2
    assert await store._transact(pragma("foreign_keys")) == 0

    def orphan(tx: Tx) -> None:
        tx.cursor.execute("INSERT INTO lanes (lane, next_due) VALUES ('lane-9', NULL)")
        tx.cursor.execute(
            "INSERT INTO jobs (delivery_id, lane, route, source_key, repository, repository_id, branch,"
            " before, after, collection, state, attempts, received_at, due_at, cancel_wanted, updated_at)"
            " VALUES ('d', 'lane-0', 'r', 's', 'o/r', 1, 'main', 'a', 'b', 'c', 'queued', 0, 1, 1, 0, 1)"
        )

    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY constraint failed"):
        await store._transact(orphan)
    assert await store.list_jobs() == []
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM lanes").fetchone()[0] == 0
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_concurrent_accepts_share_commits(store: SqliteStore) -> None:
    """Many concurrent accepts all succeed with far fewer commits than requests (group commit)."""
    count = 200
    results = await asyncio.gather(*(store.accept(delivery(f"d-{i}"), [new_job()]) for i in range(count)))
    assert all(results)
    assert store.requests == count
    assert store.commits <= count // 4
    assert len(await store.list_jobs(limit=1000)) == count


async def test_failing_request_rolls_back_only_itself(store: SqliteStore) -> None:
    """In one group commit, a request that raises is undone alone; its neighbours are committed."""

    def broken(tx: Tx) -> None:
        tx.run("put_source", key="db:broken", source_id="src-x")
        raise RuntimeError("programming error")

    release, busy = await block_writer(store)
    commits = store.commits
    before = asyncio.ensure_future(store.accept(delivery("d-1"), [new_job()]))
    failing = asyncio.ensure_future(store._transact(broken))
    after = asyncio.ensure_future(store.accept(delivery("d-2"), [new_job()]))
    await asyncio.sleep(0)  # let all three enqueue behind the busy writer
    release.set()
    await busy
    assert await before
    assert await after
    with pytest.raises(RuntimeError, match="programming error"):
        await failing
    assert store.commits == commits + 2  # the busy batch, then one batch for all three
    assert await store.get_source("db:broken") is None
    assert len(await store.list_jobs()) == 2


async def test_event_loop_runs_while_the_writer_is_busy(store: SqliteStore) -> None:
    """Database work never blocks the event loop."""
    release, busy = await block_writer(store)
    await asyncio.sleep(0.01)  # would never return if the loop were blocked
    release.set()
    await busy


async def test_close_commits_requests_already_queued(db_path: Path) -> None:
    """close() runs and commits every request made before it, then closes the file."""
    store = SqliteStore(db_path)
    await store.open()
    tasks = [asyncio.ensure_future(store.accept(delivery(f"d-{i}"), [new_job()])) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert all(await asyncio.gather(*tasks))
    reopened = SqliteStore(db_path)
    await reopened.open()
    try:
        assert len(await reopened.list_jobs(limit=100)) == 50
    finally:
        await reopened.close()


async def test_reopening_releases_leases_of_the_dead_process(db_path: Path) -> None:
    """The only replica restarting takes its lanes back at once, without waiting for lease expiry."""
    first = SqliteStore(db_path)
    await first.open()
    await first.accept(delivery(), [new_job()])
    assert await first.claim_lane(owner="old-process", now=100.0, lease=600.0) == "lane-1"
    await first.close()
    second = SqliteStore(db_path)
    await second.open()
    try:
        assert await second.claim_lane(owner="new-process", now=101.0, lease=30.0) == "lane-1"
    finally:
        await second.close()


async def test_admin_open_keeps_the_services_leases(store: SqliteStore, db_path: Path) -> None:
    """release_leases=False (an admin command beside the service) leaves live leases alone."""
    await store.accept(delivery(), [new_job()])
    assert await store.claim_lane(owner="service", now=100.0, lease=600.0) == "lane-1"
    admin = SqliteStore(db_path, release_leases=False)
    await admin.open()
    await admin.close()
    assert await store.renew_lane("lane-1", owner="service", now=110.0, lease=600.0)


async def test_migrations_are_applied_once(db_path: Path) -> None:
    """Opening an up-to-date file applies nothing again."""
    for _ in range(2):
        store = SqliteStore(db_path)
        await store.open()
        await store.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [
            (m.version,) for m in load_migrations("sqlite")
        ]


async def test_in_memory_database_works() -> None:
    """sqlite:///:memory: (tests only) is a working store for the life of the store."""
    store = SqliteStore(":memory:")
    await store.open()
    try:
        assert await store.accept(delivery(), [new_job()])
        assert len(await store.list_jobs()) == 1
    finally:
        await store.close()


async def test_max_batch_of_one_commits_every_request(store: SqliteStore, db_path: Path) -> None:
    """max_batch=1 turns group commit off (one commit per request), e.g. for benchmarks."""
    await store.close()
    single = SqliteStore(db_path, max_batch=1)
    await single.open()
    try:
        await asyncio.gather(*(single.accept(delivery(f"d-{i}"), []) for i in range(20)))
        assert single.commits == 20
    finally:
        await single.close()


async def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    """A database path in a directory that does not exist stops start-up with a clear message."""
    store = SqliteStore(tmp_path / "nowhere" / "bridge.db")
    with pytest.raises(ConfigError, match="does not exist"):
        await store.open()


async def test_the_writer_thread_tells_its_observer_each_commit(db_path: Path) -> None:
    """The threaded store (synchronous=FULL) reports every commit; there is no fsync of its own."""
    commits: list[tuple[float, int]] = []
    store = SqliteStore(db_path)
    store.on_commit = lambda seconds, requests: commits.append((seconds, requests))
    await store.open()
    try:
        assert all(await asyncio.gather(*(store.accept(delivery(f"d-{i}"), [new_job()]) for i in range(50))))
    finally:
        await store.close()
    assert len(commits) == store.commits
    assert sum(requests for _, requests in commits) == 50
    assert all(seconds > 0 for seconds, _ in commits)


# --- the lanes' chains (migration 0005) -------------------------------------------------------------


def lanes_in(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as conn:
        return [row[0] for row in conn.execute("SELECT lane FROM lanes ORDER BY lane")]


def lane_counts(db_path: Path) -> dict[str, tuple[int, int]]:
    """Each lane's job_count and its number of jobs."""
    with sqlite3.connect(db_path) as conn:
        query = "SELECT lane, job_count, (SELECT COUNT(*) FROM jobs WHERE jobs.lane = lanes.lane) FROM lanes"
        return {lane: (count, actual) for lane, count, actual in conn.execute(query)}


async def test_prune_drops_exactly_the_lanes_left_without_jobs(store: SqliteStore, db_path: Path) -> None:
    """The pruner finds empty lanes by their job_count, which the triggers keep equal to the number of
    the lane's jobs through accepts and prunes. A lane whose newest job is gone but an older one
    outlived it stays (jobs.lane references it); a failed job keeps its lane, so a requeue works there.
    The history's walk ends at the newest job that was pruned: what lay behind it is older."""
    for lane, kept in (("lane-1", None), ("lane-2", None), ("lane-3", "failed")):
        await store.accept(delivery(f"d-{lane}"), [new_job(lane, after=f"{n:040x}") for n in range(3)])
        old, middle, newest = [job.id for job in await store.lane_jobs(lane, history=0)]
        survives = lane == "lane-2"
        await store.apply([JobUpdate(middle, {"state": "done"})], now=300.0 if survives else 110.0)
        await store.apply([JobUpdate(newest, {"state": "done"})], now=110.0)
        await store.apply([JobUpdate(old, {"state": kept or "superseded"})], now=110.0)
    assert {lane: count for lane, (count, _) in lane_counts(db_path).items()} == dict.fromkeys(
        ("lane-1", "lane-2", "lane-3"), 3
    )
    assert await store.prune(deliveries_before=0.0, jobs_before=200.0) == (0, 7)
    assert lane_counts(db_path) == {"lane-2": (1, 1), "lane-3": (1, 1)}
    assert (await store.lane_snapshot("lane-2", history=50)).history == []
    [failed] = await store.list_jobs(lane="lane-3")
    assert await store.requeue([failed.id], now=400.0) == 1
    assert [job.state for job in (await store.lane_snapshot("lane-3", history=50)).jobs] == [JobState.QUEUED]
    await store.accept(delivery("d-late"), [new_job("lane-3", after="f" * 40)])
    jobs = (await store.lane_snapshot("lane-3", history=50)).jobs
    assert [job.after for job in jobs] == [f"{0:040x}", "f" * 40]  # the new job, in the same lane
    assert lane_counts(db_path)["lane-3"] == (2, 2)
    await store.accept(delivery("d-again"), [new_job("lane-1")])  # a pruned lane comes back
    assert lane_counts(db_path)["lane-1"] == (1, 1)


async def lane_reads(store: SqliteStore, lanes: list[str]) -> dict[str, object]:
    return {
        lane: (await store.lane_jobs(lane, history=3), await store.lane_snapshot(lane, history=3))
        for lane in lanes
    }


async def test_migration_0005_chains_the_jobs_already_stored(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database made before migration 0005 gets its lanes' chains: each lane read returns after the
    upgrade what the (lane, id) index gave before it, and new jobs join the chains."""
    lanes = ["lane-1", "lane-2"]
    monkeypatch.setattr(migrate, "load_migrations", lambda dialect: load_migrations(dialect)[:4])
    store = SqliteStore(db_path)
    await store.open()
    try:
        for n in range(12):
            await store.accept(delivery(f"d-{n}"), [new_job(lanes[n % 3 % 2], after=f"{n:040x}")])
        jobs = await store.list_jobs()
        states = ["done", "superseded", "failed", "queued"]
        await store.apply([JobUpdate(job.id, {"state": states[job.id % 4]}) for job in jobs], now=110.0)
        # This schema has no chains yet: its lanes are read as the code before migration 0005 read them.
        chained = store._queries
        store._queries = Queries("sqlite", {**{name: chained[name] for name in chained}, **INDEX_READS})
        before = await lane_reads(store, lanes)
    finally:
        await store.close()
    monkeypatch.undo()
    store = SqliteStore(db_path)
    await store.open()
    try:
        assert await lane_reads(store, lanes) == before
        await store.accept(delivery("d-new"), [new_job("lane-2", before="f" * 40, after="e" * 40)])
        await store.apply([JobUpdate(max(job.id for job in jobs) + 1, {"state": "done"})], now=120.0)
        [*_, newest] = (await store.lane_snapshot("lane-2", history=3)).history
        assert newest.after == "e" * 40
    finally:
        await store.close()


async def test_counts_answer_while_the_writer_is_busy(store: SqliteStore) -> None:
    """The count reads every job: it runs on a connection of its own, not queued behind the writer's
    batch (nor holding the next one back; on the worker's loop it stalled every accept)."""
    assert await store.accept(delivery("d-1"), [new_job("lane-a")])
    release, busy = await block_writer(store)
    try:
        counts = await asyncio.wait_for(store.counts(), timeout=5)
    finally:
        release.set()
        await busy
    assert counts == {state.value: 0 for state in JobState} | {"queued": 1}


async def test_counts_of_the_worker_process_store_leave_its_loop(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``on_loop``: the count is not one of the loop's group-committed requests."""
    store = SqliteStore(db_path, on_loop=True)
    await store.open()
    try:
        assert await store.accept(delivery("d-1"), [new_job("lane-a")])

        def no_request(*_: object, **__: object) -> None:
            raise AssertionError("counts went through the loop's writer")

        monkeypatch.setattr(store, "_enqueue", no_request)
        assert (await store.counts())["queued"] == 1
    finally:
        monkeypatch.undo()
        await store.close()


async def test_count_query_sorts_nothing(store: SqliteStore, db_path: Path) -> None:
    """One pass, no temporary b-tree: a GROUP BY state sorted every job's state in memory."""
    with sqlite3.connect(db_path) as connection:
        plan = connection.execute(
            "EXPLAIN QUERY PLAN " + queries.load_queries("sqlite")["count_jobs"]
        ).fetchall()
    assert [row[3] for row in plan] == ["SCAN jobs"]
