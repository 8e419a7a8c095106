"""Two `bridge serve` processes on one PostgreSQL database behave as one bridge."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bridge.samples import fake_sha
from tests.e2e.procs import Bridge, Emulator, bridge_env, emulator_process, send_push, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture
def cluster(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Bridge, Bridge, Emulator]]:
    """An emulator and two replicas on one fresh PostgreSQL schema, started at the same moment."""
    with emulator_process(tmp_path) as emulator:
        emulator.configure(pending_seconds=60)
        source = emulator.add_source("acme/api")
        routes = f'routes:\n  - repository: "acme/*"\n    branches: ["**"]\n    source_id: {source}\n'
        env = bridge_env(
            tmp_path,
            sync_url=emulator.url,
            routes=routes,
            database_url=postgres_url,
            BRIDGE_LEASE_SECONDS="3",
        )
        replicas = (Bridge(env=env, tmp=tmp_path), Bridge(env=env, tmp=tmp_path))
        starters = [threading.Thread(target=r.start) for r in replicas]
        for thread in starters:  # both apply migrations at once on an empty schema
            thread.start()
        for thread in starters:
            thread.join(60)
        try:
            yield replicas[0], replicas[1], emulator
        finally:
            for replica in replicas:
                if replica.proc is not None and replica.proc.poll() is None:
                    replica.kill()


def _invocations(emulator: Emulator) -> list[dict[str, Any]]:
    return list(emulator.state()["invocations"])


def _lane_owners(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT owner FROM lanes WHERE owner IS NOT NULL")]


def test_both_replicas_start_on_an_empty_database(cluster: tuple[Bridge, Bridge, Emulator]) -> None:
    """Two replicas starting together both apply migrations safely and report ready."""
    first, second, _ = cluster
    for replica in (first, second):
        ready = httpx.get(f"{replica.url}/readyz", timeout=5)
        assert (ready.status_code, ready.json()["checks"]["store"]) == (200, "ok")


def test_a_delivery_is_accepted_once_across_replicas(cluster: tuple[Bridge, Bridge, Emulator]) -> None:
    """The same delivery sent to both replicas is accepted by one, a duplicate for the other."""
    first, second, emulator = cluster
    sha = fake_sha("replica-dup")
    answers = [
        send_push(r.url, repository="acme/api", branch="main", after=sha, delivery="same").json()["status"]
        for r in (first, second)
    ]
    assert sorted(answers) == ["accepted", "duplicate"]
    wait_until(lambda: [i["sha"] for i in _invocations(emulator)] == [sha], timeout=15)


def test_killed_replicas_claim_expires_and_the_other_adopts(
    cluster: tuple[Bridge, Bridge, Emulator], postgres_url: str
) -> None:
    """A replica killed during a create call loses its lane to the other, which adopts, not re-creates."""
    first, second, emulator = cluster
    emulator.faults([{"operation": "create_invocation", "kind": "delay_after_commit", "seconds": 30}])
    sha = fake_sha("replica-takeover")
    assert send_push(first.url, repository="acme/api", branch="takeover", after=sha).status_code == 202
    wait_until(lambda: len(_invocations(emulator)) == 1, timeout=15)  # the create reached Sync...
    [owner] = _lane_owners(postgres_url)  # ...and the replica that made it is still waiting for the answer
    holder, other = (first, second) if f":{first.proc.pid}:" in owner else (second, first)  # type: ignore[union-attr]
    holder.kill()
    wait_until(lambda: any(o.split(":")[1] == str(other.proc.pid) for o in _lane_owners(postgres_url)) or
               not _lane_owners(postgres_url), timeout=20)  # fmt: skip
    time.sleep(3)
    [invocation] = _invocations(emulator)
    assert invocation["sha"] == sha
    with psycopg.connect(postgres_url) as conn:
        state, invocation_id = conn.execute("SELECT state, invocation_id FROM jobs").fetchone()  # type: ignore[misc]
    assert (state, invocation_id) == ("active", invocation["id"])


def test_deliveries_spread_over_replicas_with_one_killed(
    cluster: tuple[Bridge, Bridge, Emulator], postgres_url: str
) -> None:
    """Pushes spread over two replicas, one killed mid-run: nothing lost, no commit twice, newest wins."""
    first, second, emulator = cluster
    rng = random.Random(5)
    branches = [f"b{n}" for n in range(12)]
    heads = dict.fromkeys(branches, "0" * 40)
    accepted: list[str] = []
    replicas = [first, second]
    with httpx.Client() as client:
        for n in range(150):
            if n == 70:
                second.kill()
                replicas = [first]
            branch = rng.choice(branches)
            sha = fake_sha(f"spread-{n}")
            target = replicas[n % len(replicas)]
            response = send_push(
                target.url,
                client=client,
                repository="acme/api",
                branch=branch,
                before=heads[branch],
                after=sha,
            )
            assert response.json()["status"] == "accepted"
            heads[branch] = sha
            accepted.append(sha)

    def converged() -> bool:
        live = {i["sha"] for i in _invocations(emulator) if i["status"] == "pending"}
        return live == set(heads.values())

    try:
        wait_until(converged, timeout=45, interval=0.3)
    except TimeoutError:
        # Say what did not converge, so that a failure in CI can be told apart from a slow machine.
        live = {i["sha"] for i in _invocations(emulator) if i["status"] == "pending"}
        with psycopg.connect(postgres_url) as conn:
            open_jobs = conn.execute(
                "SELECT branch, after, state, attempts, due_at, cancel_wanted, error FROM jobs"
                " WHERE state NOT IN ('done', 'superseded') ORDER BY id"
            ).fetchall()
            lanes = conn.execute("SELECT lane, owner, lease_until, next_due FROM lanes").fetchall()
        pytest.fail(
            f"not converged in 45 s: newest pushes not pending {sorted(set(heads.values()) - live)},"
            f" pending but not newest {sorted(live - set(heads.values()))}; open jobs {open_jobs};"
            f" lanes {lanes}"
        )
    invocations = _invocations(emulator)
    per_collection = Counter(i["collection"] for i in invocations)
    assert max(per_collection.values()) == 1, "a commit was indexed twice"
    pending = {i["sha"] for i in invocations if i["status"] == "pending"}
    assert pending == set(heads.values()), "only each branch's newest push may still be pending"
    with psycopg.connect(postgres_url) as conn:
        stored = {row[0] for row in conn.execute("SELECT after FROM jobs")}
        deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()
    assert stored == set(accepted), "an accepted delivery was lost"
    assert deliveries == (len(accepted),)
