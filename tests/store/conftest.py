"""Store fixtures: one opened store per backend (memory, SQLite file, PostgreSQL schema).

PostgreSQL runs at ``BRIDGE_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``).
Every test gets a fresh schema of its own (``search_path`` set through the URL's ``options``), dropped
afterwards, so parallel and consecutive runs never see each other's rows. Unreachable PostgreSQL skips
the test, except under ``CI=true``, where it fails: CI must never pass by skipping the shared store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge.store.base import Store
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore
from tests.fakes import MemoryStore

# "sqlite-loop": SqliteStore(on_loop=True), as the worker process runs it (commits on the event loop,
# made durable by its WalSyncer); "sqlite": with its writer thread, as the ingress and tools run it.
BACKENDS = ["memory", "sqlite", "sqlite-loop", pytest.param("postgres", marks=pytest.mark.postgres)]


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
        elif backend in ("sqlite", "sqlite-loop"):
            store = SqliteStore(tmp_path / "bridge.db", on_loop=backend == "sqlite-loop")
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
