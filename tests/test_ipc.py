"""The frames and calls between the ingress and its worker process, over a real socket pair."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.ipc import MAX_FRAME, Answered, Channel, ChannelClosed, Link, RemoteError, encode, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Channel, list[Any], asyncio.Task[None]]]:
    ours, theirs = socket.socketpair()
    link = await Link.open(ours)
    their_link = await Link.open(theirs)
    noticed: list[Any] = []

    async def echo(*args: Any) -> Any:
        await asyncio.sleep(0)
        return args

    async def fail(message: str) -> None:
        raise ValueError(message)

    def at_once(answered: Answered, *args: Any) -> None:
        answered(True, ("at once", *args))

    def refuse(answered: Answered, message: str) -> None:
        raise ValueError(message)

    server = asyncio.create_task(
        serve(
            their_link,
            {"echo": echo, "fail": fail},
            {"note": noticed.append},
            {"at_once": at_once, "refuse": refuse},
        )
    )
    channel = Channel(link)
    reading = asyncio.create_task(channel.run())
    yield channel, noticed, server
    channel.close()
    their_link.close()
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


async def test_a_callback_handler_answers_without_a_task_and_its_error_travels_back(
    pair: tuple[Channel, list[Any], asyncio.Task[None]],
) -> None:
    channel, _, _ = pair
    assert await channel.call("at_once", 1, 2) == ("at once", 1, 2)
    with pytest.raises(RemoteError, match="ValueError: refused") as raised:
        await channel.call("refuse", "refused")
    assert raised.value.kind == "ValueError"
    with pytest.raises(RemoteError, match="KeyError"):
        await channel.call("no such method")
    assert await channel.call("echo", 2) == (2,)  # the channel carries on


async def test_frames_split_and_joined_anyhow_come_out_whole_and_in_order() -> None:
    """The bytes of a socket arrive in pieces of any size: a frame cut anywhere, several in one."""
    link = Link()
    heard: list[Any] = []
    link.receive(heard.append)
    messages = [("m", n, "x" * (n * 37)) for n in range(30)]
    stream = b"".join(encode(message) for message in messages)
    for start in range(0, len(stream), 7):  # 7 bytes at a time, across headers and bodies
        link.data_received(stream[start : start + 7])
    link.data_received(b"".join(encode(message) for message in messages))  # all in one go
    assert heard == messages * 2


async def test_messages_wait_for_a_receiver_and_the_first_can_be_taken_alone() -> None:
    link = Link()
    link.data_received(encode(("init", 1)) + encode(("call", 2)))
    assert await link.first() == ("init", 1)
    heard: list[Any] = []
    link.receive(heard.append)
    assert heard == [("call", 2)]


async def test_waiting_calls_fail_when_the_other_side_goes_away() -> None:
    ours, theirs = socket.socketpair()
    channel = Channel(await Link.open(ours))
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


async def test_an_oversized_frame_closes_the_link_and_fails_the_waiting_calls() -> None:
    ours, theirs = socket.socketpair()
    channel = Channel(await Link.open(ours))
    reading = asyncio.create_task(channel.run())
    waiting = asyncio.create_task(channel.call("anything"))
    await asyncio.sleep(0.01)
    theirs.sendall(struct.pack("!I", MAX_FRAME + 1))  # no such frame is ever read in
    with pytest.raises(ChannelClosed):
        await asyncio.wait_for(waiting, 5)
    await reading
    assert channel.closed
    theirs.close()
