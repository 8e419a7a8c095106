"""Store fixtures: one opened store per backend (memory, SQLite file, PostgreSQL schema).

PostgreSQL runs at ``BRIDGE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Every test gets a fresh schema of its own (``search_path`` set through the URL's ``options``), dropped
afterwards, so parallel and consecutive runs never see each other's rows. Unreachable PostgreSQL skips
the test, except under ``CI=true``, where it fails: CI must never pass by skipping the shared store.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from bridge.store import redact_url
from bridge.store.base import Store
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore
from tests.fakes import MemoryStore

POSTGRES_URL = os.environ.get("BRIDGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


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


StoreFactory = Callable[[], Awaitable[Store]]


@pytest.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores of one backend on one database (PostgreSQL: two of them are two replicas)."""
    backend: str = request.param
    opened: list[Store] = []
    memory = MemoryStore()
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else ""

    async def make() -> Store:
        store: Store
        if backend == "memory":
            if opened:
                return opened[0]  # one process: every "replica" shares the same memory
            store = memory
        elif backend == "sqlite":
            store = SqliteStore(tmp_path / "bridge.db")
        else:
            store = PostgresStore(url, max_size=4)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    """An opened, empty store of each backend."""
    return await make_store()
