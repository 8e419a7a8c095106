"""Pipelined durability for a SQLite store run on its event loop: commit now, answer after the fsync.

With ``synchronous=FULL`` every ``COMMIT`` waits for ``fdatasync`` of the WAL, so a store that commits
on its event loop would block that loop for the whole fsync, and no next batch could be prepared
meanwhile. With ``synchronous=NORMAL`` a commit returns once its frames are written to the WAL (in the
OS's cache; SQLite still syncs the WAL before every checkpoint and the database file after it, so the
file never corrupts). :class:`WalSyncer` then makes the commits durable itself: it calls ``fdatasync``
on the WAL file in a thread of its own, and settles the futures of every request committed before
that call started once it returns. While it runs, the loop commits the next batches; the next
``fdatasync`` covers all of them. A request is thus answered only when its commit is on stable
storage, exactly as with ``synchronous=FULL`` (``fdatasync`` makes everything written to the file
before it durable, the WAL header of a restarted log included), but commits and fsyncs overlap
instead of alternating, and one fsync serves every batch committed while the previous one ran.

Hand-written because SQLite has no "sync the log now" call apart from a checkpoint (which copies
pages, far more work), and the few lines below are the whole mechanism. The WAL file is reopened if
SQLite ever replaced it (it deletes the file only when the last connection closes, which cannot
happen while the store holds its own; the check is cheap insurance). If ``fdatasync`` fails, the
requests it was to make durable get the ``OSError`` (their commit may not survive a power loss), as
a ``COMMIT`` under ``synchronous=FULL`` would have failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class WalSyncer(Generic[T]):
    """Collects committed-but-not-yet-durable outcomes and hands them to ``settle`` once synced."""

    def __init__(
        self,
        wal_path: str,
        settle: Callable[[list[T], BaseException | None], None],
        idle: Callable[[], None] = lambda: None,
        timed: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        self._path = wal_path
        self._settle = settle
        self._idle = idle
        self._timed = timed  # told each successful fsync's duration, on the loop
        self._fd = -1
        self._inode = -1
        self._waiting: list[T] = []
        self._running: asyncio.Future[None] | None = None
        # One thread of its own, fed through a SimpleQueue, rather than a ThreadPoolExecutor, whose
        # submit() (a Future, a work item, two locks per fsync) showed in 3.4 % of the samples at
        # 1,000/s. End to end the bridge's CPU per request was 4-17 % lower in three A/B runs and 3 %
        # higher in a fourth: a small gain at most (bench/README.md, tenth round).
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, list[T]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.syncs = 0

    def open(self) -> None:
        """Open the WAL file (it exists once the database is in WAL mode and was written) and make its
        directory entry durable, once."""
        self._reopen()
        directory = os.open(os.path.dirname(os.path.abspath(self._path)), os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _reopen(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self._path, os.O_RDONLY)
        self._inode = os.fstat(self._fd).st_ino

    def _sync(self) -> None:
        """In the sync thread: fdatasync the WAL (the file SQLite writes to now)."""
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self._path).st_ino != self._inode:
                self._reopen()
        os.fdatasync(self._fd)

    def add(self, outcomes: Sequence[T]) -> None:
        """Outcomes of requests just committed: settled after the next fsync that starts from now."""
        self._waiting.extend(outcomes)
        if self._running is None:
            self._start()

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        self._running = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="bridge-sqlite-fsync", daemon=True)
            self._thread.start()
        self._jobs.put((loop, batch))

    def _serve(self) -> None:
        """The sync thread: one fsync per request, until ``close()`` sends ``None``."""
        while (job := self._jobs.get()) is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody is left to tell
                self._sync_then_tell(*job)

    def _sync_then_tell(self, loop: asyncio.AbstractEventLoop, batch: list[T]) -> None:
        """In the sync thread: fsync, then hand the outcome straight to the loop (one wake-up; an
        executor future would take two turns of the loop to reach its callback)."""
        started = time.perf_counter()
        try:
            self._sync()
        except BaseException as error:
            loop.call_soon_threadsafe(self._done, batch, error)
        else:
            loop.call_soon_threadsafe(self._done, batch, None, time.perf_counter() - started)

    def _done(self, batch: list[T], error: BaseException | None, seconds: float = 0.0) -> None:
        running, self._running = self._running, None
        self.syncs += 1
        if error is None:
            self._timed(seconds)
        self._settle(batch, error)
        if running is not None:
            running.set_result(None)
        if self._waiting:
            self._start()
        else:
            self._idle()

    @property
    def busy(self) -> bool:
        """An fsync is running (the store holds its next commit back until it ends)."""
        return self._running is not None

    async def drain(self) -> None:
        """Wait until every outcome added so far is settled."""
        while self._running is not None:
            await asyncio.shield(self._running)  # set once that sync's requests are settled

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
