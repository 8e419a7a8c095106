"""PostgreSQL store specifics: migrations under concurrency, reconnection, replicas sharing lanes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from bridge.store.base import JobUpdate
from bridge.store.migrate import load_migrations
from bridge.store.postgres import PostgresStore
from bridge.store.queries import load_queries
from tests.conftest import POSTGRES_URL
from tests.store.builders import delivery, new_job

pytestmark = pytest.mark.anyio

Replicas = Callable[[], Awaitable[PostgresStore]]


@pytest.fixture
async def replicas(postgres_url: str) -> AsyncIterator[Replicas]:
    """Opens PostgreSQL stores on one fresh schema: each one is a replica."""
    opened: list[PostgresStore] = []

    async def make() -> PostgresStore:
        store = PostgresStore(postgres_url, max_size=4)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


def schema_of(url: str) -> str:
    return url.rsplit("application_name=", 1)[1]


def applied_versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


@pytest.mark.postgres
async def test_migrations_are_idempotent(postgres_url: str, replicas: Replicas) -> None:
    """Opening an up-to-date database applies nothing again."""
    first = await replicas()
    await first.close()
    await replicas()
    assert applied_versions(postgres_url) == [m.version for m in load_migrations("postgres")]


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(postgres_url: str, replicas: Replicas) -> None:
    """Several replicas opening an empty database at once all start, and each migration runs once."""
    stores = await asyncio.gather(*(replicas() for _ in range(4)))
    assert len(stores) == 4
    assert applied_versions(postgres_url) == [m.version for m in load_migrations("postgres")]


@pytest.mark.postgres
async def test_store_recovers_after_its_connections_are_killed(postgres_url: str, replicas: Replicas) -> None:
    """After the server drops every pooled connection (as on a restart), the next call succeeds."""
    store = await replicas()
    await store.accept(delivery(), [new_job()])
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            [schema_of(postgres_url)],
        ).fetchone()
    assert killed is not None
    assert killed[0] >= 1
    assert len(await store.list_jobs()) == 1
    await store.ping()


@pytest.mark.postgres
async def test_lease_expiry_lets_another_replica_take_over(replicas: Replicas) -> None:
    """A dead replica's lane is claimed by another once its lease expired; the old holder is fenced."""
    first, second = await replicas(), await replicas()
    await first.accept(delivery(), [new_job()])
    [job] = await first.list_jobs()
    assert await first.claim_lane(owner="a", now=100.0, lease=30.0) == "lane-1"
    assert await second.claim_lane(owner="b", now=129.0, lease=30.0) is None
    assert await second.claim_lane(owner="b", now=131.0, lease=30.0) == "lane-1"
    assert not await first.apply([JobUpdate(job.id, {"state": "creating"})], now=131.0, owner="a")
    assert not await first.renew_lane("lane-1", owner="a", now=131.0, lease=30.0)
    assert await second.apply([JobUpdate(job.id, {"state": "creating"})], now=132.0, owner="b")


@pytest.mark.postgres
async def test_many_claimers_on_two_replicas_get_distinct_lanes(replicas: Replicas) -> None:
    """Under contention (SKIP LOCKED), every due lane goes to exactly one claimer."""
    first, second = await replicas(), await replicas()
    lanes = [f"lane-{index:02}" for index in range(30)]
    await first.accept(delivery(), [new_job(lane) for lane in lanes])
    claims = await asyncio.gather(
        *(
            replica.claim_lane(owner=f"w{index}", now=200.0, lease=30.0)
            for index, replica in enumerate([first, second] * 25)
        )
    )
    won = [lane for lane in claims if lane is not None]
    assert sorted(won) == lanes


@pytest.mark.postgres
async def test_concurrent_accepts_into_shared_lanes_do_not_deadlock(replicas: Replicas) -> None:
    """Deliveries touching the same lanes in different orders all commit (lanes locked in order)."""
    first, second = await replicas(), await replicas()
    shuffled = random.Random(7)
    lanes = ["x", "y", "z"]

    def jobs() -> list[str]:
        return shuffled.sample(lanes, k=len(lanes))

    results = await asyncio.gather(
        *(
            replica.accept(delivery(f"d-{index}"), [new_job(lane) for lane in jobs()])
            for index, replica in enumerate([first, second] * 20)
        )
    )
    assert all(results)
    assert (await first.counts())["queued"] == 120


async def test_open_fails_when_the_server_is_unreachable() -> None:
    """open() gives up after open_timeout instead of hanging."""
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test", open_timeout=1.0)
    with pytest.raises(PoolTimeout):
        await store.open()


@pytest.mark.postgres
async def test_a_release_waiting_on_an_accept_sees_its_job(postgres_url: str, replicas: Replicas) -> None:
    """A replica releases a lane while another replica's accept into that lane is still open: the
    release waits for the accept's lock on the lane and must then count the accept's job in the lane's
    next due time. Computed from the release's first snapshot, taken before the accept committed, it
    came out NULL: the lane was never claimed again and the push never created (a CI run of
    tests/e2e/test_replicas.py, twenty-second round)."""
    first, other = await replicas(), await replicas()
    await first.accept(delivery("d-1"), [new_job(due_at=100.0)])
    assert await first.claim_lane(owner="a", now=100.0, lease=30.0) == "lane-1"
    [job] = await first.list_jobs()
    assert await first.apply([JobUpdate(job.id, {"state": "done"})], now=101.0, owner="a")
    queries = load_queries("postgres")
    later = new_job(due_at=102.0, after="c" * 40, before=job.after)
    with psycopg.connect(postgres_url) as accepting:  # an accept of another replica, left open
        accepting.execute(queries["lower_lane"], {"lane": "lane-1", "due_at": 102.0})
        accepting.execute(
            queries["insert_job"],
            {**later._asdict(), "delivery_id": "d-2", "received_at": 102.0},
        )
        release = asyncio.ensure_future(first.release_lane("lane-1", owner="a"))
        await asyncio.sleep(0.5)
        assert not release.done()  # waiting for the accept's lock on the lane
        accepting.commit()
        await asyncio.wait_for(release, timeout=10)
    assert await other.claim_lane(owner="b", now=103.0, lease=30.0) == "lane-1"
