"""Pipelined durability for a SQLite store run on its event loop: commit now, answer after the fsync.

With ``synchronous=FULL`` every ``COMMIT`` waits for ``fdatasync`` of the WAL, so a store that commits
on its event loop would block that loop for the whole fsync, and no next batch could be prepared
meanwhile. With ``synchronous=NORMAL`` a commit returns once its frames are written to the WAL (in the
OS's cache; SQLite still syncs the WAL before every checkpoint and the database file after it, so the
file never corrupts). :class:`WalSyncer` then makes the commits durable itself: it starts an
``fdatasync`` of the WAL file without blocking the loop, and settles the futures of every request
committed before that call started once it returns. While it runs, the loop takes the next requests;
the next ``fdatasync`` covers all of them. A request is thus answered only when its commit is on
stable storage, exactly as with ``synchronous=FULL`` (``fdatasync`` makes everything written to the
file before it durable, the WAL header of a restarted log included), but one fsync serves every batch
committed while the previous one ran.

How the fsync runs without blocking the loop (an :class:`FsyncEngine`):

* :class:`KernelAioFsync`, the default on Linux: the kernel's own asynchronous I/O
  (``io_submit`` of an ``IOCB_CMD_FDSYNC``, Linux 4.18 and newer) through ``caio``, the library
  under ``aiofile``. The kernel runs the fsync in a worker of its own and signals an ``eventfd`` the
  loop watches: the loop's thread submits and settles, and no Python thread is involved. Measured
  under wrk: 0.79x against 0.75x of the bare endpoint in six alternating rounds, the server's
  threads waiting 0.27 s per second for a CPU against 0.40 (``bench/HISTORY.md``, fifteenth round).
* :class:`ThreadFsync`: ``os.fdatasync`` in one thread of the process's own, which hands the outcome
  back with ``call_soon_threadsafe``. Each fsync costs that thread four to five wake-ups (the queue,
  the GIL twice, the I/O) on a machine whose CPUs the loop and the load share. It is the fallback:
  where ``caio``'s Linux AIO is missing (another OS) or refused (``io_setup`` limits, a sandbox, a
  file system without asynchronous fsync), the syncer uses the thread, for that fsync and every later
  one, and logs the switch once.

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
import errno
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, Generic, Protocol, TypeVar

import structlog

log = structlog.get_logger("bridge.store")

T = TypeVar("T")

Done = Callable[[BaseException | None], None]
"""Told, on the loop, how one fsync ended: ``None`` or the ``OSError``."""

# What Linux AIO answers where it cannot fsync a file asynchronously (older kernels, some file
# systems, sandboxes): the fsync is then run by the thread instead, not failed.
UNSUPPORTED: Final = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EAGAIN, errno.EPERM})


class Unsupported(OSError):
    """An engine cannot fsync this file (it never ran): another engine should."""


class FsyncEngine(Protocol):
    """Runs ``fdatasync(fd)`` off the loop and tells ``done`` on the loop (:class:`Unsupported`, raised
    or told, if it cannot fsync that file)."""

    name: str

    def start(self, fd: int, done: Done) -> None: ...

    def close(self) -> None: ...


class ThreadFsync:
    """``os.fdatasync`` in one long-lived thread fed through a ``SimpleQueue`` (not an executor: its
    ``submit()`` makes a Future, a work item and takes two locks per fsync; ``bench/HISTORY.md``, tenth
    round)."""

    name = "thread"

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[asyncio.AbstractEventLoop, int, Done] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def start(self, fd: int, done: Done) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="bridge-sqlite-fsync", daemon=True)
            self._thread.start()
        self._jobs.put((asyncio.get_running_loop(), fd, done))

    def _serve(self) -> None:
        """The sync thread: one fsync per job, until ``close()`` sends ``None``; the outcome goes
        straight to the loop (one wake-up; an executor future would take two turns of the loop)."""
        while (job := self._jobs.get()) is not None:
            loop, fd, done = job
            error: BaseException | None = None
            try:
                os.fdatasync(fd)
            except BaseException as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody is left to tell
                loop.call_soon_threadsafe(done, error)

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None


def aio_error(result: int) -> OSError | None:
    """The outcome of a Linux AIO operation from its ``res`` (``caio`` passes it unsigned: a failure is
    minus an errno, modulo 2**64)."""
    if result < 1 << 63:
        return None
    code = (1 << 64) - result
    return OSError(code, os.strerror(code))


class KernelAioFsync:
    """``fdatasync`` as a Linux AIO operation (``caio.linux_aio``), completed through an ``eventfd``
    watched by the loop. Making one raises ``ImportError`` or ``SystemError`` where there is none; the
    kernel refusing the operation is :class:`Unsupported`.

    Not ``caio``'s own ``AsyncioContext``: it defers each submit to the loop's next turn and answers
    through a future that a coroutine awaits, two more turns before the requests are settled, and the
    worker process answers the ingress in the very callback that settles them (``bench/HISTORY.md``,
    tenth round). Here the outcome reaches ``done`` in the eventfd's own callback."""

    name = "aio"

    def __init__(self) -> None:
        from caio.linux_aio import Context, Operation  # imported here: only where Linux AIO exists

        self._context = Context(max_requests=4)
        self._fdsync = Operation.fdsync
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, fd: int, done: Done) -> None:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._context.fileno, self._completed)
        operation = self._fdsync(fd)
        operation.set_callback(lambda result: done(_refused(aio_error(result))))
        try:
            taken = self._context.submit(operation)
        except (ValueError, OverflowError, SystemError) as error:  # caio's types for io_submit's errno
            raise Unsupported(errno.EINVAL, "io_submit refused the fsync") from error
        if taken != 1:
            raise Unsupported(errno.EAGAIN, "io_submit took no operation")

    def _completed(self) -> None:
        """The eventfd is readable: run the callbacks of every finished operation."""
        with contextlib.suppress(BlockingIOError):  # completions may already have been taken
            self._context.poll()
        while self._context.process_events():
            pass

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError, ValueError):  # the loop or the context is gone
                self._loop.remove_reader(self._context.fileno)
            self._loop = None


def _refused(error: OSError | None) -> OSError | None:
    """A completed operation's error, as :class:`Unsupported` where it means AIO cannot fsync the file."""
    if error is not None and error.errno in UNSUPPORTED:
        return Unsupported(error.errno, error.strerror)
    return error


def default_engine() -> tuple[FsyncEngine, str | None]:
    """Linux AIO where the kernel gives a context, else the thread and why."""
    try:
        return KernelAioFsync(), None
    except (ImportError, OSError, SystemError) as error:  # SystemError: caio's for io_setup's errno
        return ThreadFsync(), f"no Linux AIO: {error}"


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
        self._timed = timed  # told each successful fsync's duration, as the loop saw it
        self._fd = -1
        self._inode = -1
        self._waiting: list[T] = []
        self._running: asyncio.Future[None] | None = None
        self._engine, reason = default_engine()
        log.info("store.fsync_engine", engine=self._engine.name, **({"reason": reason} if reason else {}))
        self.syncs = 0

    @property
    def engine(self) -> str:
        """Which :class:`FsyncEngine` runs the fsyncs: "aio" or "thread"."""
        return self._engine.name

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

    def add(self, outcomes: Sequence[T]) -> None:
        """Outcomes of requests just committed: settled after the next fsync that starts from now."""
        self._waiting.extend(outcomes)
        if self._running is None:
            self._start()

    def _start(self) -> None:
        batch, self._waiting = self._waiting, []
        self._running = asyncio.get_running_loop().create_future()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self._path).st_ino != self._inode:
                self._reopen()
        self._sync(batch, time.perf_counter())

    def _sync(self, batch: list[T], started: float) -> None:
        def done(error: BaseException | None) -> None:
            if isinstance(error, Unsupported):
                self._fall_back(error)
                self._sync(batch, started)
            else:
                self._done(batch, error, time.perf_counter() - started)

        try:
            self._engine.start(self._fd, done)
        except Unsupported as error:
            done(error)

    def _fall_back(self, error: OSError) -> None:
        """Linux AIO could not fsync this file: the thread does it from now on."""
        log.warning("store.fsync_engine", engine="thread", reason=f"Linux AIO refused the fsync: {error}")
        self._engine.close()
        self._engine = ThreadFsync()

    def _done(self, batch: list[T], error: BaseException | None, seconds: float) -> None:
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
        self._engine.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
