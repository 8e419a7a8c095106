"""Retention: redelivery ids live at least 7 days, then go with the finished jobs; the store stays bounded.

The ingress (the real app on a SQLite file) and the worker's pruner share one fake clock, so days pass
in microseconds.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from bridge import worker as worker_module
from bridge.clients.sync import SyncClient
from bridge.core.jobs import JobState
from bridge.emulator.testing import FakeClock
from bridge.http.app import create_app
from bridge.routes_file import parse_routes_text
from bridge.samples import encode, push_payload
from bridge.service import Service, worker_config
from bridge.settings import Settings
from bridge.store.base import JobUpdate
from bridge.store.sqlite import SqliteStore
from bridge.worker import Worker
from tests.factories import sha
from tests.http.conftest import SECRET, SOURCE_ID, signed_headers

pytestmark = pytest.mark.anyio

DAY = 86_400.0
ROUTES = f"routes:\n  - repository: acme/api\n    branches: ['**']\n    source_id: {SOURCE_ID}\n"


@dataclass
class Bench:
    client: AsyncTestClient[Any]
    store: SqliteStore
    worker: Worker
    clock: FakeClock
    db: Path

    async def push(self, n: int, *, delivery: str, branch: str = "main") -> str:
        """Deliver push number ``n`` under GUID ``delivery``; the answer's status."""
        body = encode(push_payload(repository="acme/api", branch=branch, after=sha(n), before=sha(n - 1)))
        response = await self.client.post(
            "/webhooks/github", content=body, headers=signed_headers(body, delivery=delivery)
        )
        assert response.status_code == 202
        return str(response.json()["status"])

    async def finish_all(self) -> None:
        """Mark every queued job done now, as the worker does when its invocation ends."""
        jobs = await self.store.list_jobs(states=[JobState.QUEUED], limit=10_000)
        updates = [JobUpdate(j.id, {"state": JobState.DONE.value}) for j in jobs]
        assert await self.store.apply(updates, now=self.clock())

    def rows(self, table: str) -> int:
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as connection:
            return int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    db = tmp_path / "bridge.db"
    settings = Settings(
        _env_file=None,
        webhook_secret=SECRET,
        sync_token="token-for-tests",
        sync_url="http://127.0.0.1:9",
        database_url=f"sqlite:///{db}",
        worker="off",
    )
    clock = FakeClock()
    store = SqliteStore(db)
    sync = SyncClient(base_url=settings.sync_url, token="token-for-tests")
    service = Service(
        settings=settings, routes=parse_routes_text(ROUTES), store=store, sync=sync, clock=clock
    )
    worker = Worker(store=store, sync=sync, config=worker_config(settings, owner="pruner"), clock=clock)
    async with AsyncTestClient(app=create_app(service)) as client:
        yield Bench(client=client, store=store, worker=worker, clock=clock, db=db)


async def test_redelivery_after_6_9_days_is_still_a_duplicate(bench: Bench) -> None:
    """A delivery GUID seen 6.9 days ago survives the pruner and its redelivery is a duplicate."""
    assert await bench.push(1, delivery="d-1") == "accepted"
    await bench.finish_all()
    bench.clock.advance(6.9 * DAY)
    assert await bench.worker.prune_once() == (0, 0)
    assert await bench.push(1, delivery="d-1") == "duplicate"
    assert bench.rows("jobs") == 1


async def test_delivery_ids_and_finished_jobs_are_pruned_after_7_1_days(bench: Bench) -> None:
    """After 7.1 days the pruner drops the delivery id and its finished job: nothing is left."""
    assert await bench.push(1, delivery="d-1") == "accepted"
    await bench.finish_all()
    bench.clock.advance(7.1 * DAY)
    assert await bench.worker.prune_once() == (1, 1)
    assert (bench.rows("deliveries"), bench.rows("jobs"), bench.rows("lanes")) == (0, 0, 0)


async def test_a_redelivery_after_pruning_is_a_new_delivery(bench: Bench) -> None:
    """Once its id is pruned, the same GUID is accepted again (GitHub only redelivers for 3 days)."""
    assert await bench.push(1, delivery="d-1") == "accepted"
    await bench.finish_all()
    bench.clock.advance(7.1 * DAY)
    await bench.worker.prune_once()
    assert await bench.push(1, delivery="d-1") == "accepted"


async def test_unfinished_jobs_outlive_the_retention_window(bench: Bench) -> None:
    """Queued, active, failed and dead jobs are kept past 7 days; only their delivery ids go."""
    states = [JobState.QUEUED, JobState.ACTIVE, JobState.FAILED, JobState.DEAD]
    for n, _ in enumerate(states, start=1):
        assert await bench.push(n, delivery=f"d-{n}", branch=f"b{n}") == "accepted"
    jobs = sorted(await bench.store.list_jobs(limit=100), key=lambda j: j.id)
    updates = [JobUpdate(job.id, {"state": state.value}) for job, state in zip(jobs, states, strict=True)]
    assert await bench.store.apply(updates, now=bench.clock())
    bench.clock.advance(30 * DAY)
    assert await bench.worker.prune_once() == (4, 0)
    assert sorted(j.state for j in await bench.store.list_jobs(limit=100)) == sorted(states)


async def test_the_store_stays_bounded_under_steady_traffic(bench: Bench) -> None:
    """Twenty days of four deliveries a day, pruned daily, never keep more than eight days of rows."""
    high_water = 0
    for day in range(20):
        for i in range(4):
            n = day * 4 + i + 1
            assert await bench.push(n, delivery=f"d-{n}", branch=f"b{i}") == "accepted"
        await bench.finish_all()
        await bench.worker.prune_once()
        high_water = max(high_water, bench.rows("deliveries"), bench.rows("jobs"))
        bench.clock.advance(DAY)
    assert high_water == 8 * 4  # today and the seven days before it: ids kept at least 7 days, then dropped


def test_retention_below_three_days_is_refused() -> None:
    """BRIDGE_RETENTION_DAYS under 3 (GitHub's redelivery window) is a settings error."""
    with pytest.raises(ValueError, match="retention_days"):
        Settings(_env_file=None, webhook_secret=SECRET, retention_days=2.9)


async def test_the_pruner_deletes_in_batches_with_a_pause_between(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five old deliveries and jobs, batches of 2: three transactions (2, 2, 1), a pause after each
    full one, one ``store.pruned`` line with the totals, and nothing left, lanes included."""
    monkeypatch.setattr(worker_module, "PRUNE_BATCH", 2)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(bench.worker, "_sleep", pause)
    calls: list[int | None] = []
    prune = bench.store.prune

    async def counted(**kwargs: Any) -> tuple[int, int]:
        calls.append(kwargs.get("limit"))
        return await prune(**kwargs)

    monkeypatch.setattr(bench.store, "prune", counted)
    for n in range(1, 6):
        assert await bench.push(n, delivery=f"d-{n}", branch=f"b{n}") == "accepted"
    await bench.finish_all()
    bench.clock.advance(7.1 * DAY)
    with capture_logs() as logs:
        assert await bench.worker.prune_once() == (5, 5)
    assert calls == [2, 2, 2]
    assert pauses == [worker_module.PRUNE_PAUSE] * 2
    assert [
        (line["deliveries"], line["jobs"], line["batches"])
        for line in logs
        if line["event"] == "store.pruned"
    ] == [(5, 5, 3)]
    assert (bench.rows("deliveries"), bench.rows("jobs"), bench.rows("lanes")) == (0, 0, 0)
