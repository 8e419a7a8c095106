"""The worker in its own process: ``bridge serve`` answers webhooks in one process and works jobs in another.

Why: the ingress is CPU-bound Python, and so is much of the worker (Sync calls through httpx, planning,
logging). In one process they share one GIL, and the SQLite writer thread's hand-offs of the GIL
stalled every group commit behind the busy event loop (``bench/HISTORY.md``, third round, has the
profile). With ``BRIDGE_WORKER=process`` (the default) they run side by side:

```
ingress process (uvicorn, PID 1)                     worker process (python -m bridge.worker_process)
POST /webhooks/github                                owns the SQLite database (SQLite) and its writer
  verify, parse, route                               runs the lanes, tracker and pruner loops
  store.accept ── SQLite: RemoteStore ── socket ──▶  store.accept_many (group commit on this loop,
               │   (one call per loop turn)           answered after fdatasync of the WAL)
               └─ PostgreSQL: its own pool
  service.wake ───────────────────────── socket ──▶  "wake" (at most one per event-loop turn)
/readyz, /metrics ── ping, counts, metrics ───────▶  answered from its store and its metrics
```

With SQLite the database still has exactly one process writing to it (the worker process), so nothing
changes for durability: ``accept`` returns once the commit is on disk, and the webhook answers 202 only
then. With PostgreSQL both processes talk to the database; the socket carries only wake-ups, pings and
metrics.

Lifecycle: the ingress starts the worker process when it starts (before serving; a worker process that
cannot open the store stops the start-up with its error), restarts it with a growing pause if it dies
(``bridge_worker_restarts_total``; meanwhile SQLite accepts answer 503 and ``/readyz`` is 503), and on
shutdown, after uvicorn has stopped taking requests, asks it to stop with the shutdown timeout and waits.
The worker process dies with the ingress: on Linux the kernel kills it (``PR_SET_PDEATHSIG``) if the
ingress is killed, and it also stops when its socket closes. It ignores Ctrl-C (the ingress stops it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import structlog

from bridge.core.jobs import DeliveryRecord, NewJob
from bridge.ipc import Answered, CallbackHandler, Channel, ChannelClosed, Handler, Link, RemoteError, serve
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.stalls import start_watching
from bridge.store.base import Accepted

log = structlog.get_logger("bridge.worker_process")

START_TIMEOUT: Final = 120.0  # opening the store may wait for migrations another replica is running
RESTART_PAUSE: Final = (0.5, 30.0)  # first and longest pause before restarting a dead worker process


def _answer_of(outcome: Accepted | BaseException | None) -> tuple[bool, Any]:
    """One accept's part of an ``accept_many`` answer: (True, superseded ids, or None for a
    redelivery), or (False, (error type, message))."""
    if isinstance(outcome, BaseException):
        return (False, (type(outcome).__name__, str(outcome)))
    return (True, None if outcome is None else outcome.superseded)


class WorkerStartError(RuntimeError):
    """The worker process could not start (its own log lines say why)."""


class WorkerProcess:
    """The ingress's side: start, call, watch, restart and stop the worker process."""

    def __init__(self, settings: Settings, *, metrics: Metrics, start_timeout: float = START_TIMEOUT) -> None:
        self._settings = settings
        self._metrics = metrics
        self._start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake_pending = False
        self.restarts = 0

    @property
    def running(self) -> bool:
        return self._channel is not None and not self._channel.closed

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise())

    async def call(self, method: str, *args: Any) -> Any:
        return await self._open_channel().call(method, *args)

    def send(self, method: str, args: tuple[Any, ...], answered: Answered) -> None:
        """``Channel.send`` to the worker process: written at once, ``answered`` told the outcome."""
        self._open_channel().send(method, args, answered)

    def _open_channel(self) -> Channel:
        channel = self._channel
        if channel is None or channel.closed:
            raise ChannelClosed("the worker process is not running (restarting)")
        return channel

    def wake(self) -> None:
        """Tell the worker process new jobs were stored; at most one message per event-loop turn."""
        if not self._wake_pending:
            self._wake_pending = True
            asyncio.get_running_loop().call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_pending = False
        if self._channel is not None:
            self._channel.notify("wake")

    async def stop(self, *, grace: float) -> None:
        """Ask the worker process to finish within ``grace`` seconds, then wait for it (kill if it hangs)."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        process, channel = self._process, self._channel
        if channel is not None and not channel.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.call("stop", grace), timeout=grace + 10)
            channel.close()
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                log.warning("worker_process.kill", pid=process.pid, reason="did not exit after stop")
                process.kill()
                await process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge.worker_process",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the ingress only; it stops us
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        link = await Link.open(ours)
        link.write(("init", self._settings, os.getpid()), now=True)
        channel = Channel(link)
        reading = asyncio.create_task(channel.run())
        try:
            pid = await asyncio.wait_for(channel.call("ready"), timeout=self._start_timeout)
        except (Exception, asyncio.CancelledError) as exc:
            channel.close()
            try:  # it closed the socket because it is exiting: let it, for its exit status
                code = await asyncio.wait_for(asyncio.shield(process.wait()), timeout=5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                code = await process.wait()
            await asyncio.gather(reading, return_exceptions=True)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise WorkerStartError(
                f"the worker process did not start ({type(exc).__name__}, exit status {code}); "
                "its log lines above say why"
            ) from None
        self._process, self._channel, self._reader = process, channel, reading
        log.info("worker_process.started", pid=pid)

    async def _supervise(self) -> None:
        pause = RESTART_PAUSE[0]
        while not self._stopping:
            process = self._process
            if process is not None:
                code = await process.wait()
                if self._stopping:
                    return
                if self._channel is not None:
                    self._channel.close()
                log.error("worker_process.exited", pid=process.pid, returncode=code, restart_in=pause)
            self.restarts += 1
            self._metrics.worker_restarts.inc()
            started = time.monotonic()
            await asyncio.sleep(pause)
            try:
                await self._spawn()
            except WorkerStartError:
                log.exception("worker_process.restart_failed")
                self._process = None
                pause = min(pause * 2, RESTART_PAUSE[1])
                continue
            # A process that lived a while earns a fresh start; one dying at once backs off further.
            pause = RESTART_PAUSE[0] if time.monotonic() - started > 60 else min(pause * 2, RESTART_PAUSE[1])


_Pending = tuple[tuple[Any, ...], list[tuple[Any, ...]], "asyncio.Future[tuple[int, ...] | None]"]


def _settle_accepts(batch: Sequence[_Pending], ok: bool, answer: Any) -> None:
    """Hand each accept of a batch its own outcome from the batch's one answer (or its one error)."""
    for index, (_, _, future) in enumerate(batch):
        if future.done():  # the request was cancelled (its client went away)
            continue
        if not ok:
            future.set_exception(answer)
            continue
        accepted, value = answer[index]
        if accepted:
            future.set_result(value)
        else:
            future.set_exception(RemoteError(*value))


class RemoteStore:
    """The ingress's store when the worker process owns the SQLite database: every call goes there.

    The accepts made in one turn of the event loop travel together, as one ``accept_many`` call and one
    answer: under load many deliveries are in flight at once, and one frame each way (one pickle, one
    task in the worker process) reaches the worker's store as one batch for one group commit. Each
    accept still gets its own result or error. (``bench/HISTORY.md``, sixth round: with the worker
    answering without SQL, the ingress behind this path ran at 10,300 req/s, 0.9x of bare.)
    """

    def __init__(self, process: WorkerProcess) -> None:
        self._process = process
        self._batch: list[_Pending] = []

    async def open(self) -> None:
        """Nothing: the worker process opened the database (and applied migrations) when it started."""

    async def close(self) -> None:
        """Nothing: the worker process closes the database when it stops."""

    async def ping(self) -> None:
        await self._process.call("ping")

    async def accept(self, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, ...] | None] = loop.create_future()
        if not self._batch:
            loop.call_soon(self._send_batch)
        # Plain tuples: a record type pickles with its class and unpickles through it, ~3x slower (measured).
        self._batch.append((tuple(delivery), [tuple(job) for job in jobs], future))
        replaced = await future
        return None if replaced is None else Accepted(replaced)

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        items = [(d, jobs) for d, jobs, _ in batch]
        try:
            self._process.send("accept_many", (items,), lambda ok, answer: _settle_accepts(batch, ok, answer))
        except ChannelClosed as error:
            _settle_accepts(batch, False, error)

    async def counts(self) -> Mapping[str, int]:
        counts: Mapping[str, int] = await self._process.call("counts")
        return counts


# ------------------------------------------------------------------------------- the child's side


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when the ingress dies (Linux); exit now if it already has."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(3)


async def _run(fd: int) -> int:
    # Imported here: the ingress process imports this module for WorkerProcess only.
    from bridge.logging import configure_logging
    from bridge.service import freeze_startup_objects, replica_name, sync_client, watch_store, worker_config
    from bridge.store import open_store
    from bridge.store.sqlite import SqliteStore
    from bridge.worker import Worker

    link = await Link.open(socket.socket(fileno=fd))
    try:
        kind, settings, parent = await link.first()
    except ConnectionError:
        return 2
    if kind != "init" or not isinstance(settings, Settings):
        return 2
    _die_with_parent(parent)
    configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values())
    structlog.contextvars.bind_contextvars(process="worker")
    # SQLite: the only process claiming lanes frees dead leases; it commits on this loop (no writer
    # thread to hand the GIL back and forth with) and makes commits durable in a sync thread.
    store = open_store(settings.database_url, sqlite_on_loop=True)
    sync = sync_client(settings)
    metrics = Metrics()
    watch_store(store, metrics)
    owner = replica_name()
    worker = Worker(
        store=store, sync=sync, config=worker_config(settings, owner=owner), clock=time.time, metrics=metrics
    )
    try:
        await store.open()
    except Exception:
        log.exception("worker_process.store_unavailable")
        await sync.aclose()
        return 1
    worker.start()
    freeze_startup_objects()
    stopped = asyncio.Event()

    async def stop(grace: float) -> None:
        if not stopped.is_set():
            stopped.set()
            await worker.stop(grace=grace)

    def accept_many(answered: Answered, items: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]) -> None:
        """One batch of the ingress's accepts, answered with, for each, (True, superseded ids or None
        for a redelivery) or (False, (error type, message)). The SQLite store runs the batch now and
        the answer is written as soon as its commit is on disk: no task, no turn of the loop between
        (``bench/HISTORY.md``, seventh round), and not after the next commit either (tenth round)."""
        assert isinstance(store, SqliteStore)  # registered below for SQLite only
        accepts = [(DeliveryRecord(*delivery), [NewJob(*job) for job in jobs]) for delivery, jobs in items]
        store.accept_soon(
            accepts, then=lambda outcomes: answered(True, [_answer_of(outcome) for outcome in outcomes])
        )

    async def ready() -> int:
        return os.getpid()

    async def counts() -> dict[str, int]:
        return dict(await store.counts())

    async def render_metrics() -> bytes:
        return metrics.render_worker()

    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)  # sent by hand: stop as the ingress would
    handlers: dict[str, Handler] = {
        "ready": ready,
        "ping": store.ping,
        "counts": counts,
        "metrics": render_metrics,
        "stop": stop,
    }
    # Only the SQLite store takes the ingress's accepts (RemoteStore); with PostgreSQL the ingress
    # stores its deliveries itself.
    callbacks: dict[str, CallbackHandler] = (
        {"accept_many": accept_many} if isinstance(store, SqliteStore) else {}
    )
    serving = asyncio.create_task(serve(link, handlers, {"wake": worker.wake}, callbacks))
    ended = asyncio.create_task(terminated.wait())
    stalls = start_watching()
    await asyncio.wait({serving, ended}, return_when=asyncio.FIRST_COMPLETED)
    # The ingress closed the socket (after "stop", or because it died) or we got SIGTERM.
    await stop(settings.shutdown_timeout if terminated.is_set() else 0.0)
    ended.cancel()
    serving.cancel()
    stalls.cancel()
    await asyncio.gather(serving, ended, stalls, return_exceptions=True)
    await sync.aclose()
    await store.close()
    log.info("worker_process.stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or not args[0].isdigit():
        print("bridge.worker_process is started by `bridge serve`, not by hand", file=sys.stderr)
        raise SystemExit(2)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        code = asyncio.run(_run(int(args[0])))
    else:
        code = uvloop.run(_run(int(args[0])))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
