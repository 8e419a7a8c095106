"""Fixtures shared by every test folder: the async backend and the recorded GitHub payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.emulator import EmulatorConfig, EmulatorState
from bridge.emulator.testing import FakeClock, RunningEmulator, run_emulator_in_thread

DATA = Path(__file__).parent / "data"
EMULATOR_TOKEN = "emulator-test-token"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the service does."""
    return "asyncio"


def load_payload(name: str) -> dict[str, Any]:
    """A recorded GitHub payload from ``tests/data/github`` (e.g. ``captured/probot/push.json``)."""
    data: dict[str, Any] = json.loads((DATA / "github" / name).read_text())
    return data


@pytest.fixture
def payload_dir() -> Path:
    return DATA / "github"


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """One Chroma Sync emulator over real loopback HTTP for the whole session."""
    with run_emulator_in_thread(token=EMULATOR_TOKEN) as running:
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
