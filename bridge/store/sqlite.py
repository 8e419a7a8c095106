"""The embedded store: SQLite in WAL mode, one replica, every write group-committed by one thread.

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

If SQLite itself aborts the whole transaction (disk full, I/O error), every request of the batch that
had not failed on its own gets that error; the requests not yet run go to a fresh transaction. If the
COMMIT fails, every request of the batch gets the error: nothing of it was stored.

Only one process should serve a database file. ``open()`` releases every lane lease left in the file
(their holder, an earlier process, is dead), unless ``release_leases=False`` (admin commands that run
beside a live service).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from bridge.core.errors import ConfigError
from bridge.store import transactions as t
from bridge.store.base import StoreClosed
from bridge.store.migrate import apply_migrations, split_sqlite_script
from bridge.store.queries import load_queries
from bridge.store.sql import SqlStore
from bridge.store.transactions import Tx

T = TypeVar("T")

MIN_SQLITE_VERSION: Final = (3, 35, 0)  # RETURNING


@dataclass(slots=True)
class _Request:
    body: Callable[[Tx], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


_STOP: Final = object()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; its work still ran (or failed) in the database
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteStore(SqlStore):
    """The :class:`~bridge.store.base.Store` on one SQLite file (``":memory:"`` for tests)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        release_leases: bool = True,
        max_batch: int = 512,
        busy_timeout: float = 5.0,
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
        self._thread = threading.Thread(
            target=self._writer, args=(connection,), name="bridge-sqlite-writer", daemon=True
        )
        self._thread.start()

    async def close(self) -> None:
        """Run every request queued so far, commit, then close the connection."""
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
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
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
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
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

    # --- the writer thread --------------------------------------------------------------------

    async def _transact(self, body: Callable[[Tx], T]) -> T:
        """Run ``body`` in the writer thread's next group commit; its result once committed."""
        if self._thread is None or self._closing or not self._thread.is_alive():
            raise StoreClosed("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Request(body, future, loop))
        return await future

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

    def _fail_leftovers(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Request):
                self._resolve(item, None, StoreClosed("SqliteStore was closed"))

    @staticmethod
    def _resolve(request: _Request, result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's event loop is already closed
            request.loop.call_soon_threadsafe(_settle, request.future, result, error)

    def _run_batch(self, connection: sqlite3.Connection, batch: Sequence[_Request]) -> None:
        cursor = connection.cursor()
        tx = Tx(cursor, self._queries)
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            for request in batch:
                self._resolve(request, None, error)
            return
        outcomes: list[tuple[_Request, Any, BaseException | None]] = []
        for index, request in enumerate(batch):
            self._requests += 1
            try:
                cursor.execute("SAVEPOINT request")
                result = request.body(tx)
                cursor.execute("RELEASE request")
            except BaseException as error:  # one request's failure must not sink the others
                if not self._rollback_to_savepoint(connection, cursor):
                    # SQLite rolled the whole transaction back: the batch so far is lost.
                    for done, _, own_error in outcomes:
                        self._resolve(done, None, own_error or error)
                    self._resolve(request, None, error)
                    if index + 1 < len(batch):
                        self._run_batch(connection, batch[index + 1 :])
                    return
                outcomes.append((request, None, error))
            else:
                outcomes.append((request, result, None))
        try:
            cursor.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    cursor.execute("ROLLBACK")
            for request, _, own_error in outcomes:
                self._resolve(request, None, own_error or error)
            return
        self._commits += 1
        for request, result, own_error in outcomes:
            self._resolve(request, result, own_error)

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
