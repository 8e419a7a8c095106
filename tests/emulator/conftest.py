"""The emulator's own tests use the session emulator of tests/conftest.py with a reset state."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bridge.clients.sync import SyncClient
from bridge.emulator import EmulatorState
from bridge.emulator.testing import RunningEmulator
from tests.conftest import EMULATOR_TOKEN as TOKEN

__all__ = ["TOKEN"]


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
