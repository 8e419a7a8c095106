"""The embedded store: SQLite in WAL mode, one replica, every write group-committed by one thread
(or, ``on_loop=True``, on the event loop; see below).

```
event loop                          writer thread (owns the only connection)
accept() ─┐                         ┌─ take one request, then drain every request queued meanwhile
claim() ──┼── queue of requests ───▶│  BEGIN IMMEDIATE
apply() ──┘   (body, future, loop)  │    SAVEPOINT request; body(tx); RELEASE    (one per request;
    ▲                               │    a body that raises is rolled back to its savepoint alone)
    │                               │  COMMIT                                    (one fsync for all)
    └── loop.call_soon_threadsafe ◀─┴─ settle each future: result, or the body's own exception
```

``synchronous=FULL``: when ``accept`` returns, the commit is on disk (accepted means durable). One
commit serves every request that arrived while the previous one was being written, so concurrent
deliveries share the fsync instead of queueing behind each other, and the event loop never blocks on
the database. Reads go through the same thread (simplest; they are short).

Consecutive ``accept`` requests of a batch (the ingress's hot path) run together in one savepoint with
multi-row statements (which deliveries exist already, then the new deliveries, their lanes and their jobs,
each one statement), instead of five statements per request: a statement is where the writer releases
and takes back the GIL, and each take-back waits for the busy event loop, so fewer statements means
less waiting (``bench/HISTORY.md``, first round, has the profile). The results are those of running
the requests one by one; should the bulk statements fail, the savepoint is rolled back and the requests
run one by one.
For the same reason, ``apply`` of several updates that set the same fields to the same values (the
worker superseding the jobs a newer push replaced) runs as one ``UPDATE ... WHERE id IN (...)``.

If SQLite itself aborts the whole transaction (disk full, I/O error), every request of the batch that
had not failed on its own gets that error; the requests not yet run go to a fresh transaction. If the
COMMIT fails, every request of the batch gets the error: nothing of it was stored.

``on_loop=True`` (the worker process, which owns the database): the same group commits run on the
caller's event loop instead of a writer thread, one per turn of the loop that made requests, and
``synchronous=NORMAL``: a :class:`~bridge.store.walsync.WalSyncer` runs ``fdatasync`` on the WAL off
the loop (a Linux AIO operation, or a thread) and settles each request's future only after the fsync
that followed its commit,
so "returned" still means "on disk". While an fsync runs, new requests wait and then share one
commit. Why: in the worker process the writer thread and the event loop (the ingress's calls, the
lanes, the Sync client) passed the GIL back and forth at every statement; measured under wrk, the
writer spent a quarter of its time waiting for the GIL and a third in ``fdatasync`` with the next
batch waiting behind it (``bench/HISTORY.md``, sixth round). On the loop there is no hand-off, and the
fsync no longer holds up the next batch's statements. The price: a statement that waits for a lock
(another process writing, ``busy_timeout``) blocks that loop, which is why the ingress and the admin
commands keep the writer thread.

Observers (``on_commit``, ``on_sync``, both optional, set before ``open()`` by whoever keeps the
metrics): after each group commit, its duration from ``BEGIN`` to the end of ``COMMIT`` and how many
requests it held; with ``on_loop`` and a file, after each ``fdatasync`` of the WAL, its duration. They
are the store's side of an answer's time (``bridge_store_*`` in ``/metrics``), so an operator can tell
a slow disk from a busy process. An observer that raises is logged and changes nothing.

A group commit or an fsync that takes ``SLOW_SECONDS`` or longer is also logged, as ``store.slow_commit``
(with the requests it held) or ``store.slow_fsync``, observers or not: every request in it waited that
long for its answer. A histogram shows that such stalls happen; the line shows when, next to the slow
answers of that moment. In the open-loop benchmark at 1,000/s, the 8 runs with two to four fsyncs of
the WAL over 10 ms had a p99 of 38-142 ms (median 63), the 8 with none or one 10-40 ms (median 23)
(``bench/HISTORY.md``, twenty-second round). At most one line per ``SLOW_SECONDS`` per kind, as each
line is one such wait.

Only one process should serve a database file. ``open()`` releases every lane lease left in the file
(their holder, an earlier process, is dead), unless ``release_leases=False`` (admin commands that run
beside a live service).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final, TypeVar, cast

import structlog

from bridge.core.errors import ConfigError
from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.core.supersede import Link, replaces
from bridge.store import transactions as t
from bridge.store.base import Accepted, JobUpdate, StoreClosed, each_outcome, future_outcome
from bridge.store.migrate import apply_migrations, split_sqlite_script
from bridge.store.queries import load_queries
from bridge.store.sql import SqlStore
from bridge.store.transactions import Tx
from bridge.store.walsync import WalSyncer

T = TypeVar("T")

MIN_SQLITE_VERSION: Final = (3, 35, 0)  # RETURNING


Accept = tuple[DeliveryRecord, tuple[NewJob, ...]]


@dataclass(slots=True)
class _Request:
    body: Callable[[Tx], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    accept: Accept | None = None  # set by accept(): may run in bulk with its neighbours
    then: Callable[[], None] | None = None  # called as the future is settled, in the same callback


Outcome = tuple[_Request, Any, BaseException | None]

log = structlog.get_logger("bridge.store.sqlite")

CommitObserver = Callable[[float, int], None]
"""Told of each group commit: seconds from ``BEGIN`` to the end of ``COMMIT``, requests it held."""
SyncObserver = Callable[[float], None]
"""Told of each ``fdatasync`` of the WAL (``on_loop`` with a file): its seconds."""

SLOW_SECONDS: Final = 0.1  # a commit or fsync this long is logged (see the module's docstring)
_STOP: Final = object()
_BULK_MAX: Final = 32  # rows per multi-row statement: bounds the shapes the statement cache keeps (_sizes)
_STATEMENT_CACHE: Final = 512  # prepared statements per connection (sqlite3's default: 128)

_DELIVERY_COLUMNS: Final = "hook_id, delivery_id, event, repository, ref, after, received_at"
_JOB_COLUMNS: Final = (
    "delivery_id, lane, route, source_key, source_id, source_spec, repository, repository_id, branch, "
    "before, after, pushed_at, collection, state, attempts, received_at, due_at, cancel_wanted, updated_at"
)
_JOB_ROW: Final = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, 0, ?)"


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; its work still ran (or failed) in the database
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _tell(observer: Callable[..., None], *args: Any) -> None:
    """Call a metrics observer; a failure there must not fail a commit that has already happened."""
    try:
        observer(*args)
    except Exception:
        log.exception("store.observer_failed")


def _settle_all(outcomes: list[Outcome]) -> None:
    for request, result, error in outcomes:
        _settle(request.future, result, error)
        if request.then is not None:
            request.then()


def _sizes(count: int) -> list[int]:
    """Split ``count`` rows into chunks of ``_BULK_MAX``, then the rest: one statement for a batch of up
    to ``_BULK_MAX`` rows. Until the fifteenth round the chunks were powers of two (10 rows went as 8
    and 2), so that the statements came in few shapes; one statement per kind instead of two or three
    made a commit of 10 accepts 3-7 % shorter (``bench/commit_breakdown.py``), and the connection's
    statement cache (``_STATEMENT_CACHE``) keeps the shapes a busy worker sees.

    Why 32 rows and not more: each shape is prepared once and stays in that cache, and a prepared
    statement grows with its rows. With 256-row chunks a worker that had met every batch size up to
    ``max_batch`` (bursts, backlogs) kept 817 shapes and ~90 MB more than at start, and its cache of 512
    re-prepared them; with 32, 128 shapes and +7.5 MB, at 60 against 64-66 us per accept
    (``bench/statement_cache.py``, twenty-fifth round). Batches of up to 32 accepts, every batch of a load
    over 32 connections, still go as one statement per kind."""
    sizes = [_BULK_MAX] * (count // _BULK_MAX)
    if count % _BULK_MAX:
        sizes.append(count % _BULK_MAX)
    return sizes


def _replacer(
    jobs: Sequence[tuple[Any, ...]],
    first: int,
    followers: dict[tuple[str, str], list[int]],
    replaced: t.Replaced,
) -> int:
    """Which of the new ``jobs`` (rows of the bulk insert, ids from ``first`` on) replaced ``replaced``:
    the first that the rule names, as if the accepts had run one by one. ``followers`` maps (lane,
    before) to the offsets of the new jobs with it, in order: only those can directly follow it."""
    for offset in followers.get((replaced.lane, replaced.after), ()):
        row = jobs[offset]
        if replaces(Link(first + offset, before=row[9], after=row[10], pushed_at=row[11]), replaced):
            return offset
    raise AssertionError(f"no new job replaced job {replaced.id}")  # pragma: no cover - the SQL's rule


def _accept_body(
    delivery: DeliveryRecord, jobs: Sequence[NewJob]
) -> tuple[Callable[[Tx], Accepted | None], Accept]:
    """An accept as the writer runs it: one by one (the body), or in bulk with its neighbours."""
    frozen = tuple(jobs)
    return (lambda tx: t.accept(tx, delivery, frozen)), (delivery, frozen)


def _rows_sql(head: str, row: str, count: int, tail: str = "") -> str:
    return f"{head} VALUES {', '.join([row] * count)}{tail}"


class SqliteStore(SqlStore):
    """The :class:`~bridge.store.base.Store` on one SQLite file (``":memory:"`` for tests)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        release_leases: bool = True,
        max_batch: int = 512,
        busy_timeout: float = 5.0,
        on_loop: bool = False,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.path = os.fspath(path)
        self._release_leases = release_leases
        self._max_batch = max_batch
        self._busy_timeout = busy_timeout
        self._queries = load_queries("sqlite")
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._commits = 0
        self._requests = 0
        self._sql: dict[tuple[str, int], str] = {}
        self._on_loop = on_loop
        self._pending: list[_Request] = []  # on_loop: requests for the next flush
        self._connection: sqlite3.Connection | None = None  # on_loop: the connection
        self._syncer: WalSyncer[Outcome] | None = None  # on_loop with a file: pipelined fsync
        self.on_commit: CommitObserver | None = None
        self.on_sync: SyncObserver | None = None

    @property
    def _synced_by_us(self) -> bool:
        """on_loop with a database file: commits are made durable by the WalSyncer, not by COMMIT."""
        return self._on_loop and self.path != ":memory:"

    @property
    def commits(self) -> int:
        """Transactions the writer thread has committed since ``open()`` (group-commit accounting)."""
        return self._commits

    @property
    def requests(self) -> int:
        """Requests the writer thread has run since ``open()``."""
        return self._requests

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._thread is not None:
            raise RuntimeError("SqliteStore is already open")
        connection = await asyncio.to_thread(self._connect)
        self._closing = False
        self._commits = self._requests = 0
        if self._on_loop:
            if self._synced_by_us:
                self._syncer = WalSyncer(
                    f"{self.path}-wal", self._settle_synced, idle=self._flush, timed=self._synced_in
                )
                try:
                    self._syncer.open()
                except BaseException:
                    self._syncer.close()
                    connection.close()
                    raise
            self._connection = connection
            return
        self._thread = threading.Thread(
            target=self._writer, args=(connection,), name="bridge-sqlite-writer", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Run every request queued so far, commit, then close the connection."""
        if self._on_loop:
            if self._connection is None or self._closing:
                return
            self._closing = True
            self._flush()
            if self._syncer is not None:
                await self._syncer.drain()
                self._syncer.close()
                self._syncer = None
            self._connection.close()
            self._connection = None
            return
        thread = self._thread
        if thread is None or self._closing:
            return
        self._closing = True
        self._queue.put(_STOP)
        await asyncio.to_thread(thread.join)
        self._thread = None

    def _connect(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
            raise RuntimeError(
                f"SQLite {sqlite3.sqlite_version} is too old: the bridge needs 3.35 or newer (RETURNING)"
            )
        if self.path != ":memory:" and not os.path.isdir(os.path.dirname(os.path.abspath(self.path))):
            raise ConfigError(f"the directory of the SQLite database {self.path!r} does not exist")
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            cached_statements=_STATEMENT_CACHE,
        )
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        """Durability settings, pending migrations and (by default) leases of dead processes."""
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal" and self.path != ":memory:":
            raise RuntimeError(f"SQLite refused WAL mode for {self.path!r} (journal_mode={mode})")
        connection.execute(f"PRAGMA synchronous={'NORMAL' if self._synced_by_us else 'FULL'}")
        # jobs.lane's foreign key is kept by triggers since migration 0005, not by SQLite's own check,
        # which scanned every job at each delete of a lane (the migration says why).
        connection.execute("PRAGMA foreign_keys=OFF")
        # Statement journals and temporary b-trees in memory, not in temporary files: every multi-row
        # statement inside the group commit's transaction needs a statement journal, and each one was
        # a file created, written and closed (about 40 % of the writer's CPU per accept, profiled).
        connection.execute("PRAGMA temp_store=MEMORY")
        cursor = connection.cursor()

        def run_script(script: str) -> None:
            for statement in split_sqlite_script(script):
                cursor.execute(statement)

        cursor.execute("BEGIN IMMEDIATE")
        try:
            tx = Tx(cursor, self._queries)
            apply_migrations(tx, "sqlite", run_script=run_script)
            if self._release_leases:
                t.release_all_leases(tx)
            cursor.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    # --- reads apart from the writer ----------------------------------------------------------

    async def counts(self) -> Mapping[str, int]:
        """Jobs per state. On a database file, read on a connection of its own in a thread, not by the
        writer: the count reads every job row (~120-150 ms at 400,000 jobs), and as one of the writer's
        requests it held every accept queued behind it for as long, on the worker process's loop
        (``on_loop``) the whole loop, at each scrape of ``/metrics`` (``bench/counts.py``,
        ``bench/HISTORY.md``, twenty-fifth round). In WAL mode the read blocks no writer; SQLite
        releases the GIL while it runs. ``":memory:"`` has one connection: the writer's."""
        if self.path == ":memory:":
            return await super().counts()
        self._check_open()
        return await asyncio.to_thread(self._count_apart)

    def _count_apart(self) -> dict[str, int]:
        uri = f"{Path(self.path).absolute().as_uri()}?mode=ro"
        connection = sqlite3.connect(uri, uri=True, timeout=self._busy_timeout, isolation_level=None)
        try:
            return t.counts(Tx(connection.cursor(), self._queries))
        finally:
            connection.close()

    # --- the writer thread --------------------------------------------------------------------

    async def accept(self, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
        return await self._enqueue(*_accept_body(delivery, jobs))

    async def accept_many(
        self, accepts: Sequence[tuple[DeliveryRecord, Sequence[NewJob]]]
    ) -> list[Accepted | Exception | None]:
        """Queue every accept at once (no task per accept: they reach the writer together, so they
        share one bulk insert and one commit); each one's result, or the error it raised."""
        return await each_outcome(self.accept_soon(accepts))

    def accept_soon(
        self,
        accepts: Sequence[tuple[DeliveryRecord, Sequence[NewJob]]],
        *,
        then: Callable[[list[Accepted | BaseException | None]], None] | None = None,
    ) -> list[asyncio.Future[Accepted | None]]:
        """Queue every accept at once, for one bulk insert and one commit; the future of each one's
        result. On the loop, the batch's SQL runs now, not at the end of this turn (the whole batch is
        here); each future is settled once the commit is on disk.

        ``then`` is called with every accept's outcome (its result or its error, in order) as soon as
        the last of them is settled, in the very callback that settles them. A future's own callbacks
        run only at the loop's next turn, and on the loop an fsync's settling is followed at once by
        the next commit's SQL: the worker process writes its answers in ``then``, before that commit,
        not a commit later (``bench/HISTORY.md``, tenth round)."""
        futures: list[asyncio.Future[Accepted | None]] = []
        settled: Callable[[], None] | None = None
        if then is not None and not accepts:
            then([])  # nothing to settle: answered at once, as an empty batch always was
        elif then is not None:
            remaining = len(accepts)

            def settled() -> None:
                nonlocal remaining
                remaining -= 1
                if remaining == 0:
                    then(list(map(future_outcome, futures)))

        for delivery, jobs in accepts:
            futures.append(self._enqueue(*_accept_body(delivery, jobs), then=settled))
        if self._on_loop:
            self._flush()
        return futures

    def _apply_body(
        self, updates: tuple[JobUpdate, ...], *, now: float, owner: str | None, lease: float | None
    ) -> Callable[[Tx], bool]:
        """Updates that all set the same fields to the same values, each job once, run as
        :meth:`_apply_same`; any others one by one (``transactions.apply``)."""
        if len(updates) < 2 or any(update.fields != updates[0].fields for update in updates):
            return super()._apply_body(updates, now=now, owner=owner, lease=lease)
        ids = sorted({update.job_id for update in updates})
        if len(ids) != len(updates):  # a job updated twice: the later update wins, one by one
            return super()._apply_body(updates, now=now, owner=owner, lease=lease)
        fields = dict(updates[0].fields)
        return lambda tx: self._apply_same(tx, ids, fields, now=now, owner=owner, lease=lease)

    def _apply_same(
        self,
        tx: Tx,
        ids: Sequence[int],
        fields: dict[str, Any],
        *,
        now: float,
        owner: str | None,
        lease: float | None = None,
    ) -> bool:
        """``transactions.apply`` for updates that all set ``fields``, in a few statements."""
        cursor = cast(sqlite3.Cursor, tx.cursor)

        def each_chunk(sql: str, *, before: Sequence[Any] = ()) -> list[Any]:
            found: list[Any] = []
            start = 0
            for size in _sizes(len(ids)):
                marks = ", ".join(["?"] * size)
                found += cursor.execute(
                    sql.format(marks=marks), [*before, *ids[start : start + size]]
                ).fetchall()
                start += size
            return found

        if owner is not None:  # fenced: every lane of these jobs must be leased to the caller
            lanes = sorted(
                {row[0] for row in each_chunk("SELECT DISTINCT lane FROM jobs WHERE id IN ({marks})")}
            )
            held = 0
            for offset in range(0, len(lanes), _BULK_MAX):
                chunk = lanes[offset : offset + _BULK_MAX]
                marks = ", ".join(["?"] * len(chunk))
                sql = f"SELECT COUNT(*) FROM lanes WHERE lane IN ({marks}) AND owner = ? AND lease_until >= ?"  # noqa: S608
                held += cursor.execute(sql, [*chunk, owner, now]).fetchone()[0]
            if held != len(lanes):
                return False
            if lease is not None:
                t.renew_lanes(tx, lanes, owner=owner, now=now, lease=lease)
        values = [value.value if isinstance(value, Enum) else value for value in fields.values()]
        assignments = "".join(f"{name} = ?, " for name in fields)  # names checked by check_update
        update = f"UPDATE jobs SET {assignments}updated_at = ? WHERE id IN ({{marks}})"  # noqa: S608
        each_chunk(update, before=[*values, now])
        due = each_chunk(
            "SELECT lane, MIN(due_at) FROM jobs WHERE id IN ({marks})"
            " AND (state IN ('queued', 'creating') OR cancel_wanted) GROUP BY lane"
        )
        earliest: dict[str, float] = {}
        for lane, due_at in due:  # chunks may name a lane twice
            earliest[lane] = min(float(due_at), earliest.get(lane, math.inf))
        for lane in sorted(earliest):
            tx.run("lower_lane", lane=lane, due_at=earliest[lane])
        return True

    async def _transact(self, body: Callable[[Tx], T]) -> T:
        """Run ``body`` in the writer thread's next group commit; its result once committed."""
        return await self._enqueue(body)

    def _check_open(self) -> None:
        if self._on_loop:
            if self._connection is None or self._closing:
                raise StoreClosed("SqliteStore is not open")
        elif self._thread is None or self._closing or not self._thread.is_alive():
            raise StoreClosed("SqliteStore is not open")

    def _enqueue(
        self, body: Callable[[Tx], T], accept: Accept | None = None, *, then: Callable[[], None] | None = None
    ) -> asyncio.Future[T]:
        """Queue ``body`` for the next group commit; the future of its result once committed (and
        ``then()`` called as it is settled)."""
        self._check_open()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        request = _Request(body, future, loop, accept, then)
        if not self._on_loop:
            self._queue.put(request)
        else:
            if not self._pending:
                loop.call_soon(self._flush)
            self._pending.append(request)
        return future

    def _writer(self, connection: sqlite3.Connection) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is _STOP:
                    break
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                self._run_batch(connection, [item for item in batch if isinstance(item, _Request)])
        finally:
            connection.close()
            self._fail_leftovers()

    def _flush(self) -> None:
        """on_loop: run every request made since the last flush, ``max_batch`` per transaction."""
        if self._connection is None or not self._pending:
            return
        if self._syncer is not None and self._syncer.busy and not self._closing:
            return  # the next commit waits for the fsync in flight: then it takes everything queued
        batch, self._pending = self._pending, []
        for start in range(0, len(batch), self._max_batch):
            self._run_batch(self._connection, batch[start : start + self._max_batch])

    @staticmethod
    def _settle_synced(outcomes: list[Outcome], error: BaseException | None) -> None:
        """The WAL was synced (or failed to sync, ``error``) after these requests committed."""
        if error is None:
            _settle_all(outcomes)
        else:
            _settle_all([(request, None, own or error) for request, _, own in outcomes])

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request):
                self._resolve(item, None, StoreClosed("SqliteStore was closed"))

    def _resolve(self, request: _Request, result: Any, error: BaseException | None) -> None:
        if self._on_loop:
            self._resolve_all([(request, result, error)])
            return
        with contextlib.suppress(RuntimeError):  # the caller's event loop is already closed
            request.loop.call_soon_threadsafe(_settle_all, [(request, result, error)])

    def _resolve_all(self, outcomes: Sequence[Outcome]) -> None:
        """Settle a batch's futures with one wake-up of each event loop, not one per request (on_loop:
        once the WAL is synced)."""
        if self._on_loop:
            if self._syncer is not None:
                self._syncer.add(outcomes)
            else:
                _settle_all(list(outcomes))
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for outcome in outcomes:
            by_loop.setdefault(outcome[0].loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's event loop is already closed
                loop.call_soon_threadsafe(_settle_all, items)

    def _synced_in(self, seconds: float) -> None:
        if seconds >= SLOW_SECONDS:
            log.warning("store.slow_fsync", seconds=round(seconds, 3))
        if self.on_sync is not None:
            _tell(self.on_sync, seconds)

    def _run_batch(
        self, connection: sqlite3.Connection, batch: Sequence[_Request], *, bulk: bool = True
    ) -> None:
        began = time.perf_counter()
        cursor = connection.cursor()
        tx = Tx(cursor, self._queries)
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self._resolve_all([(request, None, error) for request in batch])
            return
        outcomes: list[Outcome] = []
        single_until = 0  # requests before this index run one by one (their bulk attempt failed)
        index = 0
        while index < len(batch):
            end = index
            while bulk and index >= single_until and end < len(batch) and batch[end].accept is not None:
                end += 1
            if end - index >= 2:
                group = batch[index:end]
                results = self._bulk_accept(connection, cursor, group)
                if not isinstance(results, Exception):
                    self._requests += len(group)
                    outcomes += [
                        (request, result, None) for request, result in zip(group, results, strict=True)
                    ]
                    index = end
                    continue
                if not connection.in_transaction:
                    # SQLite rolled the whole transaction back: the batch so far is lost; the rest,
                    # this group included, goes to a fresh transaction, one request at a time.
                    self._resolve_all([(done, None, own or results) for done, _, own in outcomes])
                    self._run_batch(connection, batch[index:], bulk=False)
                    return
                single_until = end
            request = batch[index]
            self._requests += 1
            try:
                cursor.execute("SAVEPOINT request")
                result = request.body(tx)
                cursor.execute("RELEASE request")
            except BaseException as error:  # one request's failure must not sink the others
                if not self._rollback_to_savepoint(connection, cursor):
                    # SQLite rolled the whole transaction back: the batch so far is lost.
                    self._resolve_all([(done, None, own or error) for done, _, own in outcomes])
                    self._resolve(request, None, error)
                    if index + 1 < len(batch):
                        self._run_batch(connection, batch[index + 1 :], bulk=bulk)
                    return
                outcomes.append((request, None, error))
            else:
                outcomes.append((request, result, None))
            index += 1
        try:
            cursor.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    cursor.execute("ROLLBACK")
            self._resolve_all([(request, None, own or error) for request, _, own in outcomes])
            return
        self._commits += 1
        seconds = time.perf_counter() - began
        if seconds >= SLOW_SECONDS:
            log.warning("store.slow_commit", seconds=round(seconds, 3), requests=len(batch))
        if self.on_commit is not None:
            _tell(self.on_commit, seconds, len(batch))
        self._resolve_all(outcomes)

    def _bulk_accept(
        self, connection: sqlite3.Connection, cursor: sqlite3.Cursor, group: Sequence[_Request]
    ) -> list[Accepted | None] | Exception:
        """Run consecutive accept requests together in one savepoint; the error if that failed (the
        savepoint is then rolled back, or SQLite lost the whole transaction)."""
        try:
            cursor.execute("SAVEPOINT bulk")
            results = self._insert_accepts(cursor, [request.accept for request in group if request.accept])
            cursor.execute("RELEASE bulk")
        except Exception as error:
            if connection.in_transaction:
                try:
                    cursor.execute("ROLLBACK TO bulk")
                    cursor.execute("RELEASE bulk")
                except sqlite3.Error:
                    with contextlib.suppress(sqlite3.Error):
                        cursor.execute("ROLLBACK")
            return error
        return results

    def _statement(self, kind: str, count: int) -> str:
        sql = self._sql.get((kind, count))
        if sql is None:
            if kind == "existing":
                marks = ", ".join(["?"] * count)
                sql = f"SELECT delivery_id FROM deliveries WHERE hook_id = ? AND delivery_id IN ({marks})"  # noqa: S608 - "?" only
            elif kind == "deliveries":
                sql = _rows_sql(
                    f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})", "(?, ?, ?, ?, ?, ?, ?)", count
                )
            elif kind == "lanes":
                sql = _rows_sql(
                    "INSERT INTO lanes (lane, next_due)",
                    "(?, ?)",
                    count,
                    " ON CONFLICT (lane) DO UPDATE SET next_due = excluded.next_due"
                    " WHERE lanes.next_due IS NULL OR lanes.next_due > excluded.next_due",
                )
            else:
                sql = _rows_sql(f"INSERT INTO jobs ({_JOB_COLUMNS})", _JOB_ROW, count)
            self._sql[(kind, count)] = sql
        return sql

    def _insert_accepts(self, cursor: sqlite3.Cursor, accepts: Sequence[Accept]) -> list[Accepted | None]:
        """What ``transactions.accept`` does for each of ``accepts`` in turn, in five statements."""
        wanted: dict[str, list[str]] = {}
        for delivery, _ in accepts:
            wanted.setdefault(delivery.hook_id, []).append(delivery.delivery_id)
        seen: set[tuple[str, str]] = set()
        for hook_id, ids in wanted.items():
            unique = list(dict.fromkeys(ids))
            start = 0
            for size in _sizes(len(unique)):
                chunk = unique[start : start + size]
                start += size
                cursor.execute(self._statement("existing", size), [hook_id, *chunk])
                seen.update((hook_id, row[0]) for row in cursor.fetchall())
        fresh: list[int] = []  # indexes into accepts of the deliveries to store
        for index, accept in enumerate(accepts):
            key = (accept[0].hook_id, accept[0].delivery_id)
            if key not in seen:  # else a redelivery, or a second copy within this batch
                seen.add(key)
                fresh.append(index)
        results: list[Accepted | None] = [None] * len(accepts)
        if not fresh:
            return results
        deliveries = []
        earliest: dict[str, float] = {}
        jobs = []
        owners: list[int] = []  # for each row of jobs, its index into accepts
        for index in fresh:
            delivery, new_jobs = accepts[index]
            received_at = float(delivery.received_at)
            deliveries.append(
                (
                    delivery.hook_id, delivery.delivery_id, delivery.event, delivery.repository,
                    delivery.ref, delivery.after, received_at,
                )
            )  # fmt: skip
            for job in new_jobs:
                due_at = float(job.due_at)
                if due_at < earliest.get(job.lane, math.inf):
                    earliest[job.lane] = due_at
                jobs.append(
                    (
                        delivery.delivery_id, job.lane, job.route, job.source_key, job.source_id,
                        job.source_spec, job.repository, job.repository_id, job.branch, job.before,
                        job.after, job.pushed_at, job.collection, received_at, due_at, received_at,
                    )
                )  # fmt: skip
                owners.append(index)
        lanes = sorted(earliest.items())
        for kind, rows in (("deliveries", deliveries), ("lanes", lanes), ("jobs", jobs)):
            start = 0
            for size in _sizes(len(rows)):
                params = [value for row in rows[start : start + size] for value in row]
                start += size
                cursor.execute(self._statement(kind, size), params)
        replaced: dict[int, list[int]] = {index: [] for index in fresh}
        if jobs:
            # This thread is the database's only writer, and AUTOINCREMENT gives each row of an INSERT
            # the next id: the new jobs are ids first..last, in the order of ``jobs``.
            last = cast(int, cursor.lastrowid)
            first = last - len(jobs) + 1
            gone = t.supersede_on_arrival(Tx(cursor, self._queries), first=first, last=last, delivery_id=None)
            if gone:
                followers: dict[tuple[str, str], list[int]] = {}
                for offset, row in enumerate(jobs):
                    followers.setdefault((row[1], row[9]), []).append(offset)
                for old in gone:
                    replaced[owners[_replacer(jobs, first, followers, old)]].append(old.id)
        for index in fresh:
            results[index] = Accepted(tuple(sorted(replaced[index])))
        return results

    @staticmethod
    def _rollback_to_savepoint(connection: sqlite3.Connection, cursor: sqlite3.Cursor) -> bool:
        if not connection.in_transaction:
            return False
        try:
            cursor.execute("ROLLBACK TO request")
            cursor.execute("RELEASE request")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                cursor.execute("ROLLBACK")
            return False
        return True
