"""Helpers for tests in any folder: a fake clock and the emulator on a free loopback port.

Example::

    from bridge.emulator.testing import FakeClock, run_emulator_in_thread

    clock = FakeClock()
    with run_emulator_in_thread(token="t", state=EmulatorState(clock=clock)) as (base_url, state):
        ...  # SyncClient(base_url=base_url, token="t"); clock.advance(3.0); state.snapshot()
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from bridge.emulator.app import build_emulator_server
from bridge.emulator.state import EmulatorState


class FakeClock:
    """A wall clock (epoch seconds) that moves only when told to."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RunningEmulator(NamedTuple):
    base_url: str
    state: EmulatorState


@contextmanager
def run_emulator_in_thread(
    *,
    token: str,
    state: EmulatorState | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    http: str = "auto",
    startup_timeout: float = 10.0,
) -> Iterator[RunningEmulator]:
    """Serve the emulator over real HTTP from a daemon thread; yield ``(base_url, state)``.

    ``port=0`` (the default) takes a free port. The listening socket is bound here, before the server
    starts, so the port is known at once and never raced for.
    """
    state = state if state is not None else EmulatorState()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]
        server = build_emulator_server(token=token, state=state, host=host, port=port, http=http)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"sync-emulator-{port}", daemon=True
        )
        thread.start()
        try:
            deadline = time.monotonic() + startup_timeout
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the Sync emulator did not start")
                time.sleep(0.01)
            yield RunningEmulator(f"http://{host}:{port}", state)
        finally:
            server.should_exit = True
            thread.join(timeout=startup_timeout)
