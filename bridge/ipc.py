"""Calls between the bridge's two processes (the ingress and its worker) over one socket pair.

```
ingress process                                           worker process
Channel.send("accept_many", (batch,), answered) ──(id, "accept_many", args)──▶ serve(): callbacks[...]
      answered(ok, value) as the answer is read ◀──(id, True, result)───  (called as the frame is read,
Channel.call("counts") / await the future       ◀─────────────────────▶   answers when committed)
Channel.notify("wake")                          ──(None, "wake", ())──▶   notices["wake"]()
```

Frames are a 4-byte big-endian length and a pickle. Hand-written, because asyncio has streams but no
message framing and ``multiprocessing.connection`` blocks; it is the few lines below. Pickle is safe
here: the socket pair is made by the ingress process and inherited by the one child it starts, so
nothing else can write to it. An error in a handler travels back as its type name and message (never a
pickled exception: those may not unpickle) and is raised in the caller as :class:`RemoteError`.

Each end is a :class:`Link`, an ``asyncio.Protocol``: frames are cut out of the bytes in
``data_received`` and handed on in that same callback. A stream reader would wake a reading task
first, one more turn of the event loop for every frame on each side, and under load one turn lasts
milliseconds (``bench/HISTORY.md``, seventh round). For the same reason a call to one of the
``callbacks`` of :func:`serve` (``accept_many``) runs in that callback and answers through the
function it is given, where a call to one of the ``handlers`` runs as a task of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import structlog

from bridge.store.base import StoreClosed

log = structlog.get_logger("bridge.ipc")

_HEADER: Final = struct.Struct("!I")
MAX_FRAME: Final = 64 * 1024 * 1024


class ChannelClosed(StoreClosed):
    """The other process is gone (or going): the call was not answered."""


class RemoteError(RuntimeError):
    """A call failed in the other process; ``kind`` is the exception's type name there."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def encode(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


Receiver = Callable[[Any], None]


class Link(asyncio.Protocol):
    """One end of the socket pair: messages out (``write``) and in (handed to a receiver).

    Messages that arrive before a receiver is set wait for it, in order. Frames written in one turn of
    the event loop go out in one ``write`` (one system call), not one each: under load, many calls and
    answers are made in the same turn.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._receiver: Receiver | None = None
        self._early: list[Any] = []
        self._first: asyncio.Future[Any] | None = None
        self._frames: list[bytes] = []
        self._closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, sock: socket.socket) -> Link:
        """A link over ``sock``, a connected stream socket (one end of a socket pair)."""
        _, link = await asyncio.get_running_loop().create_connection(cls, sock=sock)
        return link

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        while len(buffer) - offset >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer, offset)
            if size > MAX_FRAME:
                log.error("ipc.frame_too_large", size=size, limit=MAX_FRAME)
                self.close()
                return
            end = offset + _HEADER.size + size
            if len(buffer) < end:
                break
            message = pickle.loads(buffer[offset + _HEADER.size : end])  # noqa: S301 - our own child process
            offset = end
            self._deliver(message)
        del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)
        if self._first is not None and not self._first.done():
            self._first.set_exception(ConnectionError("the other process closed the socket"))

    # --- receiving

    def _deliver(self, message: Any) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_result(message)
        elif self._receiver is None:
            self._early.append(message)
        else:
            self._receiver(message)

    async def first(self) -> Any:
        """The first message (before a receiver is set); ``ConnectionError`` if the socket closes."""
        if self._early:
            return self._early.pop(0)
        if self._closed.done():
            raise ConnectionError("the other process closed the socket")
        self._first = asyncio.get_running_loop().create_future()
        return await self._first

    def receive(self, receiver: Receiver) -> None:
        """Hand every message to ``receiver`` from now on, those that waited first."""
        self._receiver = receiver
        early, self._early = self._early, []
        for message in early:
            receiver(message)

    async def wait_closed(self) -> None:
        """Return once the socket is closed (by either side)."""
        await asyncio.shield(self._closed)

    # --- sending

    @property
    def closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def write(self, message: Any, *, now: bool = False) -> None:
        """Queue ``message`` for the end of this turn, or (``now``: the caller batched already) write
        it at once, after those queued before it."""
        frame = encode(message)
        if now:
            self._frames.append(frame)
            self._flush()
            return
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames and not self.closing:
            assert self._transport is not None
            self._transport.write(b"".join(frames))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


Answered = Callable[[bool, Any], None]
"""Told the outcome of a call: ``(True, result)``, or ``(False, exception)``."""


class Channel:
    """The calling side: ``call`` waits for the answer, ``notify`` does not; ``run`` lasts as long as
    the link."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any] | Answered] = {}
        self._closed = False
        link.receive(self._answer)

    @property
    def closed(self) -> bool:
        return self._closed

    async def call(self, method: str, *args: Any) -> Any:
        if self._closed:
            raise ChannelClosed("the worker process is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._send(future, method, args, now=False)
        return await future

    def send(self, method: str, args: tuple[Any, ...], answered: Answered) -> None:
        """Write a call at once and have ``answered`` told its outcome as soon as the answer is read
        (no future and no task in between: one turn of the event loop sooner). For a caller that
        batched its calls already and settles futures of its own."""
        if self._closed:
            raise ChannelClosed("the worker process is not running")
        self._send(answered, method, args, now=True)

    def _send(
        self, waiter: asyncio.Future[Any] | Answered, method: str, args: tuple[Any, ...], *, now: bool
    ) -> None:
        call_id = next(self._ids)
        self._pending[call_id] = waiter
        self._link.write((call_id, method, args), now=now)

    def notify(self, method: str, *args: Any) -> None:
        if not self._closed:
            self._link.write((None, method, args))

    def _answer(self, message: Any) -> None:
        call_id, ok, value = message
        waiter = self._pending.pop(call_id, None)
        if waiter is not None:
            _tell(waiter, ok, value if ok else RemoteError(*value))

    async def run(self) -> None:
        """Wait until the other side closes; then every call still waiting fails."""
        try:
            await self._link.wait_closed()
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        waiters, self._pending = list(self._pending.values()), {}
        for waiter in waiters:
            _tell(waiter, False, ChannelClosed("the worker process went away before answering"))
        self._link.close()


def _tell(waiter: asyncio.Future[Any] | Answered, ok: bool, value: Any) -> None:
    if not isinstance(waiter, asyncio.Future):
        waiter(ok, value)
    elif waiter.done():  # the caller was cancelled
        return
    elif ok:
        waiter.set_result(value)
    else:
        waiter.set_exception(value)


Handler = Callable[..., Awaitable[Any]]
CallbackHandler = Callable[..., None]
"""Called as ``handler(answered, *args)``; it must tell ``answered`` the outcome exactly once."""


def _failure(exc: BaseException) -> tuple[str, str]:
    return (type(exc).__name__, str(exc))


async def serve(
    link: Link,
    handlers: Mapping[str, Handler],
    notices: Mapping[str, Callable[..., None]],
    callbacks: Mapping[str, CallbackHandler] | None = None,
) -> None:
    """The answering side: run each call and write its answer; return once the link is closed.

    A call to one of ``handlers`` runs as its own task. One of ``callbacks`` is called right away, in
    the turn that read it, and answers through the callback it is given: no task, no turn in between
    (``accept_many``). A notice is handled at once and answered never.
    """
    tasks: set[asyncio.Task[Any]] = set()
    by_callback = callbacks or {}

    def answer(call_id: int) -> Answered:
        def answered(ok: bool, value: Any) -> None:
            reply = (call_id, True, value) if ok else (call_id, False, _failure(value))
            link.write(reply, now=True)  # the answer was awaited: nothing to wait for any more

        return answered

    def finished(call_id: int) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            tasks.discard(task)
            if task.cancelled():
                answer(call_id)(False, ChannelClosed("the call was cancelled"))
            elif (error := task.exception()) is not None:
                answer(call_id)(False, error)
            else:
                answer(call_id)(True, task.result())

        return done

    def received(message: Any) -> None:
        call_id, method, args = message
        try:
            if call_id is None:
                notices[method](*args)
            elif method in by_callback:
                by_callback[method](answer(call_id), *args)
            else:
                task = asyncio.ensure_future(handlers[method](*args))
                tasks.add(task)
                task.add_done_callback(finished(call_id))
        except Exception as exc:  # an unknown method, or a handler that raised before answering
            if call_id is None:
                log.exception("ipc.notice_failed", method=method)
            else:
                answer(call_id)(False, exc)

    link.receive(received)
    try:
        await link.wait_closed()
    finally:
        if tasks:
            await asyncio.wait(tasks, timeout=5)
