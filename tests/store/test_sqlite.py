"""SQLite store specifics: durability, the writer thread, group commit and savepoints."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bridge.core.errors import ConfigError
from bridge.store.migrate import load_migrations
from bridge.store.sqlite import SqliteStore
from bridge.store.transactions import Tx
from tests.store.builders import delivery, new_job

pytestmark = pytest.mark.anyio


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
    """WAL journal, synchronous=FULL (2), foreign keys on and temporary storage in memory (2: statement
    journals are no temporary files), on the writer's connection."""
    assert await store._transact(pragma("synchronous")) == 2
    assert await store._transact(pragma("temp_store")) == 2
    assert await store._transact(pragma("foreign_keys")) == 1
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
