"""The frames and calls between the ingress and its worker process, over a real socket pair."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.ipc import MAX_FRAME, Channel, ChannelClosed, RemoteError, read, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel, list[Any], asyncio.Task[None]]]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    their_reader, their_writer = await asyncio.open_connection(sock=theirs)
    noticed: list[Any] = []

    async def echo(*args: Any) -> Any:
        await asyncio.sleep(0)
        return args

    async def fail(message: str) -> None:
        raise ValueError(message)

    server = asyncio.create_task(
        serve(their_reader, their_writer, {"echo": echo, "fail": fail}, {"note": noticed.append})
    )
    channel = Channel(reader, writer)
    reading = asyncio.create_task(channel.run())
    yield channel, noticed, server
    channel.close()
    their_writer.close()
    await asyncio.gather(reading, server, return_exceptions=True)


async def test_calls_are_answered_each_by_its_own_id(
    pair: tuple[Channel, list[Any], asyncio.Task[None]],
) -> None:
    channel, _, _ = pair
    results = await asyncio.gather(*(channel.call("echo", n, str(n)) for n in range(200)))
    assert results == [(n, str(n)) for n in range(200)]


async def test_a_failing_handler_raises_remote_error_with_its_type(
    pair: tuple[Channel, list[Any], asyncio.Task[None]],
) -> None:
    channel, _, _ = pair
    with pytest.raises(RemoteError, match="ValueError: no good") as raised:
        await channel.call("fail", "no good")
    assert raised.value.kind == "ValueError"
    assert await channel.call("echo", 1) == (1,)  # the channel carries on


async def test_notices_are_delivered_without_an_answer(
    pair: tuple[Channel, list[Any], asyncio.Task[None]],
) -> None:
    channel, noticed, _ = pair
    channel.notify("note", "wake")
    await channel.call("echo")  # answered after the notice was handled: frames are in order
    assert noticed == ["wake"]


async def test_a_sent_call_tells_its_callback_the_outcome(
    pair: tuple[Channel, list[Any], asyncio.Task[None]],
) -> None:
    """send(): the callback hears the answer (or the handler's error) as soon as it is read."""
    channel, _, _ = pair
    heard: list[tuple[bool, Any]] = []
    done = asyncio.Event()

    def answered(ok: bool, value: Any) -> None:
        heard.append((ok, value))
        if len(heard) == 2:
            done.set()

    channel.send("echo", (1, "one"), answered)
    channel.send("fail", ("no good",), answered)
    await asyncio.wait_for(done.wait(), 5)
    failed, echoed = sorted(heard, key=lambda outcome: outcome[0])  # each call is its own task
    assert echoed == (True, (1, "one"))
    assert failed[0] is False
    assert isinstance(failed[1], RemoteError)
    assert failed[1].kind == "ValueError"


async def test_waiting_calls_fail_when_the_other_side_goes_away() -> None:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    channel = Channel(reader, writer)
    reading = asyncio.create_task(channel.run())
    waiting = asyncio.create_task(channel.call("anything"))
    heard: list[tuple[bool, Any]] = []
    channel.send("anything", (), lambda ok, value: heard.append((ok, value)))
    await asyncio.sleep(0.01)
    theirs.close()  # nobody will ever answer
    with pytest.raises(ChannelClosed):
        await waiting
    assert [ok for ok, _ in heard] == [False]
    assert isinstance(heard[0][1], ChannelClosed)
    await reading
    assert channel.closed
    with pytest.raises(ChannelClosed):
        await channel.call("anything")
    with pytest.raises(ChannelClosed):
        channel.send("anything", (), lambda ok, value: None)


async def test_an_oversized_frame_is_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(struct.pack("!I", MAX_FRAME + 1))
    with pytest.raises(ValueError, match="over the"):
        await read(reader)
