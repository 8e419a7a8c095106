"""Calls between the bridge's two processes (the ingress and its worker) over one socket pair.

```
ingress process                                        worker process
Channel.call("accept", record, jobs) ──(id, "accept", args)──▶ serve(): handlers["accept"](*args)
      await the future              ◀──(id, True, result)───  (each call its own task, so concurrent
Channel.notify("wake")              ──(None, "wake", ())────▶  accepts share one group commit)
```

Frames are a 4-byte big-endian length and a pickle. Hand-written, because asyncio has streams but no
message framing and ``multiprocessing.connection`` blocks; it is the few lines below. Pickle is safe
here: the socket pair is made by the ingress process and inherited by the one child it starts, so
nothing else can write to it. An error in a handler travels back as its type name and message (never a
pickled exception: those may not unpickle) and is raised in the caller as :class:`RemoteError`.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from bridge.store.base import StoreClosed

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


async def read(reader: asyncio.StreamReader) -> Any:
    """The next message; ``asyncio.IncompleteReadError`` at the end of the stream."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is over the {MAX_FRAME}-byte limit")
    return pickle.loads(await reader.readexactly(size))  # noqa: S301 - our own child process


class _Coalesced:
    """Frames written in one turn of the event loop go out in one ``write`` (one system call), not one
    each: under load, many calls and answers are made in the same turn."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._frames: list[bytes] = []

    def write(self, frame: bytes, *, now: bool = False) -> None:
        """Queue ``frame`` for the end of this turn, or (``now``: the caller batched already) write it
        at once, after those queued before it."""
        if now:
            self._frames.append(frame)
            self._flush()
            return
        if not self._frames:
            asyncio.get_running_loop().call_soon(self._flush)
        self._frames.append(frame)

    def _flush(self) -> None:
        frames, self._frames = self._frames, []
        if frames and not self._writer.is_closing():
            self._writer.write(b"".join(frames))


Answered = Callable[[bool, Any], None]
"""Told the outcome of a call: ``(True, result)``, or ``(False, exception)``."""


class Channel:
    """The calling side: ``call`` waits for the answer, ``notify`` does not; ``run`` reads answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._out = _Coalesced(writer)
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Any] | Answered] = {}
        self._closed = False

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
        self._out.write(encode((call_id, method, args)), now=now)

    def notify(self, method: str, *args: Any) -> None:
        if not self._closed:
            self._out.write(encode((None, method, args)))

    async def run(self) -> None:
        """Read answers until the other side closes; then every call still waiting fails."""
        try:
            while True:
                call_id, ok, value = await read(self._reader)
                waiter = self._pending.pop(call_id, None)
                if waiter is not None:
                    _tell(waiter, ok, value if ok else RemoteError(*value))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        waiters, self._pending = list(self._pending.values()), {}
        for waiter in waiters:
            _tell(waiter, False, ChannelClosed("the worker process went away before answering"))
        self._writer.close()


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


async def serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    handlers: Mapping[str, Handler],
    notices: Mapping[str, Callable[..., None]],
) -> None:
    """The answering side: run each call as its own task and write its answer; return at end of stream."""
    tasks: set[asyncio.Task[None]] = set()
    out = _Coalesced(writer)

    async def answer(call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            result = await handlers[method](*args)
        except Exception as exc:
            reply: tuple[Any, ...] = (call_id, False, (type(exc).__name__, str(exc)))
        else:
            reply = (call_id, True, result)
        out.write(encode(reply), now=True)  # the answer was awaited: nothing to wait for any more

    try:
        while True:
            call_id, method, args = await read(reader)
            if call_id is None:
                notices[method](*args)
                continue
            task = asyncio.create_task(answer(call_id, method, args))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        if tasks:
            await asyncio.wait(tasks, timeout=5)
