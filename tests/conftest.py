"""Fixtures shared by every test folder: the async backend and the recorded GitHub payloads."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from bridge.emulator import EmulatorConfig, EmulatorState
from bridge.emulator.testing import FakeClock, RunningEmulator, run_emulator_in_thread
from bridge.store import redact_url

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


POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test server's URL, once it answered; skip (or, under CI=true, fail) when it does not."""
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as error:
        reason = f"PostgreSQL is unreachable at {redact_url(POSTGRES_URL)} ({type(error).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it (set BRIDGE_TEST_POSTGRES_URL)")
        pytest.skip(reason)
    return POSTGRES_URL


def with_schema(url: str, schema: str) -> str:
    """``url`` whose connections use ``schema`` and name themselves after it (``application_name``)."""
    options = quote(f"-csearch_path={schema}", safe="")
    return f"{url}{'&' if '?' in url else '?'}options={options}&application_name={schema}"


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL on a fresh, empty schema of the test server; the schema is dropped afterwards."""
    schema = f"bridge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield with_schema(postgres_server, schema)
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [schema]
        )
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
