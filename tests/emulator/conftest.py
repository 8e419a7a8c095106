"""One emulator over real loopback HTTP for the session, reset before each test, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bridge.clients.sync import SyncClient
from bridge.emulator import EmulatorConfig, EmulatorState
from bridge.emulator.testing import FakeClock, RunningEmulator, run_emulator_in_thread

TOKEN = "emulator-test-token"


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator_in_thread(token=TOKEN) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(emulator: RunningEmulator, clock: FakeClock) -> EmulatorState:
    """The running emulator's state, emptied, with default configuration and the test's clock."""
    emulator.state.reset()
    emulator.state.config = EmulatorConfig()
    emulator.state.clock = clock
    return emulator.state


@pytest.fixture
def base_url(emulator: RunningEmulator, state: EmulatorState) -> str:
    return emulator.base_url


@pytest.fixture
async def sync(base_url: str) -> AsyncIterator[SyncClient]:
    async with SyncClient(base_url=base_url, token=TOKEN, timeout=5.0) as client:
        yield client


@pytest.fixture
async def raw(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Plain HTTP to the emulator with the token, for requests the SyncClient would never send."""
    async with httpx.AsyncClient(base_url=base_url, headers={"x-chroma-token": TOKEN}, timeout=5.0) as client:
        yield client


@pytest.fixture
async def source_id(sync: SyncClient) -> str:
    return await sync.create_source(database_name="code", repository="acme/api", app_id="42")
