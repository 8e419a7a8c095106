"""The shared store: PostgreSQL, for several replicas on one database.

Why a synchronous ``psycopg_pool.ConnectionPool`` driven from a ``ThreadPoolExecutor`` rather than
``AsyncConnectionPool``: the transaction bodies in :mod:`bridge.store.transactions` are plain
synchronous functions that the SQLite store already runs on its writer thread. Running the very same
bodies here means one implementation of every Store method's SQL logic, and one contract suite that
exercises it twice. The price is a thread per concurrent transaction (``max_size`` of them, one per
pooled connection); the event loop only awaits futures and never blocks on the database.

Each call is one transaction on one pooled connection (autocommit connections, explicit
``conn.transaction()``): committed before the awaited call returns, rolled back if the body raises.
PostgreSQL batches concurrent commits' WAL flushes by itself, so concurrent deliveries already share
fsyncs; no application-level group commit is needed.

Replicas. Lanes are claimed with ``FOR UPDATE SKIP LOCKED``, so claimers never wait on each other and
never get the same lane; a lease whose holder died expires and another replica claims the lane.
Transactions that touch several lanes lock them in name order; if PostgreSQL still aborts one for a
deadlock or a serialization failure, the body runs again (up to three times): an aborted transaction
committed nothing. ``prune`` also retries the rare foreign-key race where an accept adds a job to a
lane that prune just found empty.

Reconnection. The pool checks each connection as it hands it out (``check=check_connection``, one
empty query), discards broken ones (a server restart, ``pg_terminate_backend``) and opens new ones in
the background, retrying with backoff for ``reconnect_timeout``. A call that was *using* a connection
when the server went away fails with ``psycopg.OperationalError``; the next call gets a fresh one.

Migrations run at ``open()`` under ``pg_advisory_xact_lock``, so replicas that start together apply
each migration once.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from bridge.store import transactions as t
from bridge.store.base import StoreClosed
from bridge.store.migrate import apply_migrations
from bridge.store.queries import load_queries
from bridge.store.sql import SqlStore
from bridge.store.transactions import Tx

T = TypeVar("T")

ATTEMPTS: Final = 3
_RETRY: Final = (errors.DeadlockDetected, errors.SerializationFailure)
_RETRY_PRUNE: Final = (*_RETRY, errors.ForeignKeyViolation)

Pool = ConnectionPool[psycopg.Connection[TupleRow]]


class PostgresStore(SqlStore):
    """The :class:`~bridge.store.base.Store` on a PostgreSQL database (``postgresql://`` URL)."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        open_timeout: float = 30.0,
        ping_timeout: float = 5.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError("need 0 <= min_size <= max_size and max_size >= 1")
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._open_timeout = open_timeout
        self._ping_timeout = ping_timeout
        self._queries = load_queries("postgres")
        self._pool: Pool | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            raise RuntimeError("PostgresStore is already open")
        executor = ThreadPoolExecutor(max_workers=self._max_size, thread_name_prefix="bridge-postgres")
        pool: Pool = ConnectionPool(
            self._url,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            kwargs={"autocommit": True},
            check=ConnectionPool.check_connection,
            timeout=self._timeout,
            name="bridge",
        )
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._open_pool, pool)
        except BaseException:
            await asyncio.to_thread(self._shut, executor, pool)
            raise
        self._closing = False
        self._pool, self._executor = pool, executor

    def _open_pool(self, pool: Pool) -> None:
        pool.open(wait=True, timeout=self._open_timeout)
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:

            def run_script(script: str) -> None:
                cursor.execute(script)  # no parameters: several statements in one call are fine

            apply_migrations(Tx(cursor, self._queries), "postgres", run_script=run_script)

    async def close(self) -> None:
        """Wait for the transactions under way, then close every connection."""
        pool, executor = self._pool, self._executor
        if pool is None or executor is None or self._closing:
            return
        self._closing = True
        await asyncio.to_thread(self._shut, executor, pool)
        self._pool = self._executor = None

    @staticmethod
    def _shut(executor: ThreadPoolExecutor, pool: Pool) -> None:
        executor.shutdown(wait=True)
        pool.close()

    # --- transactions -------------------------------------------------------------------------

    async def _transact(self, body: Callable[[Tx], T]) -> T:
        return await self._submit(body, retry_on=_RETRY)

    async def _submit(
        self,
        body: Callable[[Tx], T],
        *,
        retry_on: tuple[type[Exception], ...],
        checkout_timeout: float | None = None,
    ) -> T:
        pool, executor = self._pool, self._executor
        if pool is None or executor is None or self._closing:
            raise StoreClosed("PostgresStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, self._run, pool, body, retry_on, checkout_timeout)

    def _run(
        self,
        pool: Pool,
        body: Callable[[Tx], T],
        retry_on: tuple[type[Exception], ...],
        checkout_timeout: float | None,
    ) -> T:
        for attempt in itertools.count(1):
            try:
                with (
                    pool.connection(timeout=checkout_timeout) as conn,
                    conn.transaction(),
                    conn.cursor() as cursor,
                ):
                    return body(Tx(cursor, self._queries))
            except retry_on:
                if attempt >= ATTEMPTS:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def ping(self) -> None:
        """Raise unless a pooled connection answers within ``ping_timeout`` seconds."""
        await self._submit(t.ping, retry_on=(), checkout_timeout=self._ping_timeout)

    async def prune(
        self, *, deliveries_before: float, jobs_before: float, limit: int | None = None
    ) -> tuple[int, int]:
        return await self._submit(
            lambda tx: t.prune(tx, deliveries_before=deliveries_before, jobs_before=jobs_before, limit=limit),
            retry_on=_RETRY_PRUNE,
        )
