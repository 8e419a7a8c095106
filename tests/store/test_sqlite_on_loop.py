"""SqliteStore(on_loop=True), the worker process's store: commits on the event loop, answers only after
its WalSyncer made them durable, and overlaps the fsync with the next batch. The contract tests run
on it too (``sqlite-loop`` in ``tests/store/conftest.py``)."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.store import open_store
from bridge.store import sqlite as sqlite_module
from bridge.store import walsync as walsync_module
from bridge.store.sqlite import SqliteStore
from bridge.store.walsync import WalSyncer
from tests.store.builders import delivery, new_job
from tests.store.test_sqlite import pragma

pytestmark = pytest.mark.anyio


ON_LINUX = sys.platform == "linux"
ENGINES = ["aio", "thread"] if ON_LINUX else ["thread"]
linux_only = pytest.mark.skipif(not ON_LINUX, reason="Linux AIO exists only on Linux")


def real_engine(name: str) -> walsync_module.FsyncEngine:
    if name == "aio":
        return walsync_module.KernelAioFsync()
    return walsync_module.ThreadFsync()


class Gate:
    """Holds fsyncs back while cleared; ``set()`` starts the held ones (from any thread)."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._open = True
        self._release = release

    @property
    def is_set(self) -> bool:
        return self._open

    def clear(self) -> None:
        self._open = False

    def set(self) -> None:
        self._open = True
        self._release()


class GatedSync:
    """The syncer's engine, wrapped: a real one (Linux AIO or the thread, by the test's parameter) that
    records which file each fsync is for, and can be held before it starts or made to fail."""

    name = "gated"

    def __init__(self, inner: walsync_module.FsyncEngine) -> None:
        self.inner = inner
        self.paths: list[str] = []
        self.entered = threading.Semaphore(0)
        self.gate = Gate(self._release)
        self.error: OSError | None = None
        self._held: list[tuple[asyncio.AbstractEventLoop, int, walsync_module.Done]] = []

    def start(self, fd: int, done: walsync_module.Done) -> None:
        self.paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        self.entered.release()
        loop = asyncio.get_running_loop()
        if self.error is not None:
            error, self.error = self.error, None
            loop.call_soon(done, error)
        elif self.gate.is_set:
            self.inner.start(fd, done)
        else:
            self._held.append((loop, fd, done))

    def _release(self) -> None:
        held, self._held = self._held, []
        for loop, fd, done in held:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.inner.start, fd, done)

    def close(self) -> None:
        self.inner.close()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.acquire, True, 10)


@pytest.fixture(params=ENGINES)
def fsync(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedSync]:
    gated = GatedSync(real_engine(request.param))
    monkeypatch.setattr(walsync_module, "default_engine", lambda: (gated, None))
    yield gated
    gated.gate.set()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bridge.db"


@pytest.fixture
async def store(db_path: Path, fsync: GatedSync) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(db_path, on_loop=True)
    await store.open()
    yield store
    fsync.gate.set()
    await store.close()


async def test_open_store_runs_sqlite_on_the_loop_when_asked(db_path: Path) -> None:
    """The worker process's open_store(..., sqlite_on_loop=True) gives the on-loop store."""
    on_loop, threaded = (
        open_store(f"sqlite:///{db_path}", sqlite_on_loop=True),
        open_store(f"sqlite:///{db_path}"),
    )
    assert isinstance(on_loop, SqliteStore)
    assert isinstance(threaded, SqliteStore)
    assert on_loop._on_loop
    assert not threaded._on_loop


async def test_commits_are_normal_and_synced_by_the_store(store: SqliteStore) -> None:
    """synchronous=NORMAL (1): COMMIT does not fsync; the WalSyncer does, before any answer."""
    assert await store._transact(pragma("synchronous")) == 1
    assert await store._transact(pragma("temp_store")) == 2  # MEMORY


async def test_an_accept_is_answered_only_after_the_wal_is_synced(
    store: SqliteStore, fsync: GatedSync, db_path: Path
) -> None:
    """Committed is not enough: the answer waits for fdatasync of the WAL file to return."""
    fsync.gate.clear()
    accepted = asyncio.ensure_future(store.accept(delivery("d-1"), [new_job()]))
    await fsync.wait_entered()
    await asyncio.sleep(0.05)
    assert not accepted.done()  # committed (other connections see it), not yet durable
    with sqlite3.connect(db_path) as other:
        assert other.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0] == 1
    fsync.gate.set()
    assert await accepted
    assert fsync.paths[-1] == str(db_path.with_name(f"{db_path.name}-wal").resolve())


async def test_requests_during_an_fsync_share_the_next_commit(store: SqliteStore, fsync: GatedSync) -> None:
    """While one fsync runs, new requests wait for it, then all go in one commit and one fsync."""
    fsync.gate.clear()
    first = asyncio.ensure_future(store.accept(delivery("d-0"), [new_job()]))
    await fsync.wait_entered()
    commits = store.commits
    later = [asyncio.ensure_future(store.accept(delivery(f"d-{i}"), [new_job()])) for i in range(1, 20)]
    await asyncio.sleep(0.05)
    assert store.commits == commits  # held back: the loop stays free while the fsync runs
    fsync.gate.set()
    assert await first
    assert all(await asyncio.gather(*later))
    assert store.commits == commits + 1
    assert len(await store.list_jobs(limit=100)) == 20


async def test_a_failed_fsync_fails_the_requests_it_was_to_make_durable(
    store: SqliteStore, fsync: GatedSync
) -> None:
    """fdatasync failing means those commits may not survive a power loss: their callers get the
    error (the webhook answers 500 and GitHub may redeliver); the store goes on working."""
    fsync.error = OSError(5, "Input/output error")
    with pytest.raises(OSError, match="Input/output error"):
        await store.accept(delivery("d-1"), [new_job()])
    assert await store.accept(delivery("d-2"), [new_job()])


async def test_close_answers_every_request_after_the_last_fsync(db_path: Path, fsync: GatedSync) -> None:
    store = SqliteStore(db_path, on_loop=True)
    await store.open()
    fsync.gate.clear()
    tasks = [asyncio.ensure_future(store.accept(delivery(f"d-{i}"), [new_job()])) for i in range(30)]
    await asyncio.sleep(0)
    closing = asyncio.ensure_future(store.close())
    await fsync.wait_entered()
    await asyncio.sleep(0.05)
    assert not closing.done()
    fsync.gate.set()
    await closing
    assert all(await asyncio.gather(*tasks))
    reopened = SqliteStore(db_path)
    await reopened.open()
    try:
        assert len(await reopened.list_jobs(limit=100)) == 30
    finally:
        await reopened.close()


async def test_in_memory_on_loop_store_answers_without_a_syncer() -> None:
    store = SqliteStore(":memory:", on_loop=True)
    await store.open()
    try:
        assert await store.accept(delivery(), [new_job()])
        assert store._syncer is None
    finally:
        await store.close()


async def test_the_syncer_reopens_a_replaced_wal_file(tmp_path: Path, fsync: GatedSync) -> None:
    """Should the WAL file ever be replaced (SQLite deletes it only when the last connection closes),
    the next fsync syncs the new file, not the unlinked one."""
    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"old")
    settled: list[list[int]] = []
    syncer: WalSyncer[int] = WalSyncer(str(wal), lambda batch, error: settled.append(batch))
    syncer.open()
    try:
        wal.unlink()
        wal.write_bytes(b"new")
        syncer.add([1, 2])
        await syncer.drain()
        assert settled == [[1, 2]]
        assert fsync.paths[-1] == str(wal.resolve())
    finally:
        syncer.close()


async def test_observers_are_told_each_commit_and_each_fsync(db_path: Path, fsync: GatedSync) -> None:
    """``on_commit`` gets each group commit's duration and size, ``on_sync`` each fsync's duration:
    one commit and one fsync for the requests that waited out an fsync together."""
    commits: list[tuple[float, int]] = []
    syncs: list[float] = []
    store = SqliteStore(db_path, on_loop=True)
    store.on_commit = lambda seconds, requests: commits.append((seconds, requests))
    store.on_sync = syncs.append
    await store.open()
    try:
        fsync.gate.clear()
        first = asyncio.ensure_future(store.accept(delivery("d-0"), [new_job()]))
        await fsync.wait_entered()
        later = [asyncio.ensure_future(store.accept(delivery(f"d-{i}"), [new_job()])) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        assert [requests for _, requests in commits] == [1]
        assert syncs == []  # that fsync is still running
        fsync.gate.set()
        await asyncio.gather(first, *later)
        assert [requests for _, requests in commits] == [1, 5]
        assert len(syncs) == 2
        assert all(seconds > 0 for seconds, _ in commits)
        assert syncs[0] >= 0.05  # it was held that long
    finally:
        await store.close()


@pytest.mark.parametrize("slow", [0.1, 10.0])
async def test_a_slow_fsync_is_logged(
    store: SqliteStore, fsync: GatedSync, monkeypatch: pytest.MonkeyPatch, slow: float
) -> None:
    """An fsync held 0.15 s writes one ``store.slow_fsync`` warning with its duration when the threshold
    is 0.1 s, and none when it is 10 s; the accept is answered either way."""
    monkeypatch.setattr(sqlite_module, "SLOW_SECONDS", slow)
    with capture_logs() as logs:
        fsync.gate.clear()
        accepted = asyncio.ensure_future(store.accept(delivery("d-1"), [new_job()]))
        await fsync.wait_entered()
        await asyncio.sleep(0.15)
        fsync.gate.set()
        assert await accepted
    slow_lines = [line for line in logs if line["event"] == "store.slow_fsync"]
    if slow < 1:
        assert len(slow_lines) >= 1
        assert slow_lines[0]["log_level"] == "warning"
        assert slow_lines[0]["seconds"] >= 0.15
    else:
        assert slow_lines == []


@pytest.mark.parametrize("slow", [0.0, 10.0])
async def test_a_slow_commit_is_logged_with_its_requests(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, slow: float
) -> None:
    """A group commit at or over the threshold writes ``store.slow_commit`` with how many requests it
    held (threshold 0: every commit); under it, nothing."""
    monkeypatch.setattr(sqlite_module, "SLOW_SECONDS", slow)
    with capture_logs() as logs:
        results = await asyncio.gather(*(store.accept(delivery(f"d-{i}"), [new_job()]) for i in range(3)))
    assert all(results)
    slow_lines = [line for line in logs if line["event"] == "store.slow_commit"]
    if slow == 0:
        assert sum(line["requests"] for line in slow_lines) == 3
        assert all(line["seconds"] >= 0 for line in slow_lines)
    else:
        assert slow_lines == []


async def test_an_observer_that_fails_changes_nothing(db_path: Path, fsync: GatedSync) -> None:
    """Metrics are not worth a lost answer: the accept is still committed, synced and answered."""

    def broken(*_: object) -> None:
        raise RuntimeError("observer bug")

    store = SqliteStore(db_path, on_loop=True)
    store.on_commit = broken
    store.on_sync = broken
    await store.open()
    try:
        assert await store.accept(delivery("d-1"), [new_job()])
        assert await store.accept(delivery("d-1"), [new_job()]) is None  # stored: a redelivery now
    finally:
        await store.close()


async def test_the_thread_engine_runs_one_thread_of_its_own_and_stops_it_on_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback engine: every fsync goes to one long-lived thread (no executor per call), which
    calls ``os.fdatasync`` on the WAL; close() ends it."""
    monkeypatch.setattr(walsync_module, "default_engine", lambda: (walsync_module.ThreadFsync(), None))
    synced: list[str] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(walsync_module.os, "fdatasync", recording)
    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"log")
    settled: list[list[int]] = []
    syncer: WalSyncer[int] = WalSyncer(str(wal), lambda batch, error: settled.append(batch))
    syncer.open()

    def sync_threads() -> list[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread.name == "bridge-sqlite-fsync"]

    before = len(sync_threads())
    try:
        assert syncer.engine == "thread"
        for round_ in range(3):
            syncer.add([round_])
            await syncer.drain()
        assert settled == [[0], [1], [2]]
        assert syncer.syncs == 3
        assert synced == [str(wal.resolve())] * 3
        assert len(sync_threads()) == before + 1
    finally:
        syncer.close()
    assert len(sync_threads()) == before
    syncer.close()  # a second close is harmless


async def test_the_thread_engine_hands_back_the_error_of_fdatasync(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(walsync_module.os, "fdatasync", failing)
    engine = walsync_module.ThreadFsync()
    told: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    try:
        engine.start(0, told.set_result)
        error = await asyncio.wait_for(told, 10)
    finally:
        engine.close()
    assert isinstance(error, OSError)
    assert error.errno == 5


@linux_only
async def test_on_linux_the_syncer_uses_kernel_aio_without_a_thread(tmp_path: Path) -> None:
    """The default engine here: Linux AIO, completed on the loop; no sync thread is started."""
    wal = tmp_path / "x.db-wal"
    wal.write_bytes(b"log")
    settled: list[tuple[list[int], BaseException | None]] = []
    syncer: WalSyncer[int] = WalSyncer(str(wal), lambda batch, error: settled.append((batch, error)))
    syncer.open()
    threads = threading.active_count()
    try:
        assert syncer.engine == "aio"
        for round_ in range(3):
            wal.write_bytes(b"more" * round_)
            syncer.add([round_])
            await asyncio.wait_for(syncer.drain(), 10)
        assert settled == [([0], None), ([1], None), ([2], None)]
        assert syncer.syncs == 3
        assert threading.active_count() == threads
    finally:
        syncer.close()


@linux_only
async def test_a_file_linux_aio_cannot_fsync_falls_back_to_the_thread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The kernel refuses an asynchronous fsync of /dev/null (no fsync of its own): the syncer logs the
    switch and runs that fsync, and every later one, in the thread, whose own error the batch gets."""
    settled: list[tuple[list[int], BaseException | None]] = []
    syncer: WalSyncer[int] = WalSyncer(os.devnull, lambda batch, error: settled.append((batch, error)))
    syncer.open()
    try:
        assert syncer.engine == "aio"
        syncer.add([1])
        await asyncio.wait_for(syncer.drain(), 10)
        assert syncer.engine == "thread"
        [(batch, error)] = settled
        assert batch == [1]
        assert isinstance(error, OSError)
        assert error.errno == errno.EINVAL  # fdatasync's own answer, from the thread
        syncer.add([2])
        await asyncio.wait_for(syncer.drain(), 10)
        assert [batch for batch, _ in settled] == [[1], [2]]
    finally:
        syncer.close()
    assert "Linux AIO refused the fsync" in capsys.readouterr().out


def test_a_linux_aio_result_is_an_error_only_when_negative() -> None:
    """caio passes the io_event's res unsigned: minus an errno, modulo 2**64, is that error."""
    assert walsync_module.aio_error(0) is None
    error = walsync_module.aio_error((1 << 64) - errno.EIO)
    assert isinstance(error, OSError)
    assert error.errno == errno.EIO


async def test_accept_soon_then_is_told_every_outcome_as_the_fsync_settles_them(
    store: SqliteStore, fsync: GatedSync
) -> None:
    """``then`` gets each accept's outcome in order once the fsync returns, in the callback that
    settles the batch: before the futures' own callbacks had their turn of the loop."""
    assert await store.accept(delivery("d-0"), [new_job()])
    told: list[list[object]] = []
    fsync.gate.clear()
    futures = store.accept_soon(
        [(delivery("d-1"), [new_job()]), (delivery("d-0"), [new_job()])], then=told.append
    )
    seen_by_callbacks: list[int] = []
    futures[-1].add_done_callback(lambda _: seen_by_callbacks.append(len(told)))
    await fsync.wait_entered()
    await asyncio.sleep(0.05)
    assert told == []  # committed, not yet durable
    fsync.gate.set()
    await asyncio.gather(*futures)
    assert len(told) == 1
    first, second = told[0]
    assert first is not None
    assert not isinstance(first, BaseException)
    assert second is None  # d-0 again: a redelivery
    assert seen_by_callbacks == [1]  # then ran before the futures' callbacks


async def test_accept_soon_then_answers_an_empty_batch_at_once(store: SqliteStore) -> None:
    told: list[list[object]] = []
    assert store.accept_soon([], then=told.append) == []
    assert told == [[]]


async def test_accept_soon_then_is_told_a_failed_fsync_as_every_outcome(
    store: SqliteStore, fsync: GatedSync
) -> None:
    """A failed fdatasync reaches ``then`` too (the worker process answers the ingress with the
    error, which answers 500): an answer that skipped ``then`` would leave the ingress waiting."""
    fsync.error = OSError(5, "Input/output error")
    told: list[list[object]] = []
    futures = store.accept_soon(
        [(delivery("d-1"), [new_job()]), (delivery("d-2"), [new_job()])], then=told.append
    )
    await asyncio.gather(*futures, return_exceptions=True)
    assert len(told) == 1
    assert [type(outcome) for outcome in told[0]] == [OSError, OSError]


def test_an_aio_completion_that_means_unsupported_asks_for_another_engine() -> None:
    """A completed AIO fsync failing with EINVAL (the file system cannot do it asynchronously) is
    ``Unsupported``, which makes the syncer fall back to the thread; an I/O error stays an error."""
    refused = walsync_module._refused(walsync_module.aio_error((1 << 64) - errno.EINVAL))
    assert isinstance(refused, walsync_module.Unsupported)
    failed = walsync_module._refused(walsync_module.aio_error((1 << 64) - errno.EIO))
    assert isinstance(failed, OSError)
    assert not isinstance(failed, walsync_module.Unsupported)
    assert walsync_module._refused(None) is None
