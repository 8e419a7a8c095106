"""Graceful shutdown of `bridge serve` (a real process) on SIGTERM while Sync create calls are in flight.

SIGTERM stops the listener at once, gives in-flight lanes BRIDGE_SHUTDOWN_TIMEOUT seconds, then cancels
them and exits 0. Whatever was cut short is finished by the next start: every accepted push ends with
exactly one invocation.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.samples import fake_sha
from tests.e2e.procs import Bridge, Emulator, bridge_env, emulator_process, query_store, send_push, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MARGIN = 6.0  # uvicorn's own shutdown, the store's close and interpreter exit, on a busy CI machine


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with emulator_process(tmp_path_factory.mktemp("shutdown-emulator")) as running:
        yield running


def start_bridge(tmp: Path, emulator: Emulator, *, shutdown: float, sync_timeout: float) -> Bridge:
    emulator.reset()
    emulator.configure(pending_seconds=30)
    source = emulator.add_source("acme/api")
    routes = f'routes:\n  - repository: "acme/*"\n    branches: ["**"]\n    source_id: {source}\n'
    env = bridge_env(
        tmp,
        sync_url=emulator.url,
        routes=routes,
        BRIDGE_SYNC_TIMEOUT=str(sync_timeout),
        BRIDGE_SHUTDOWN_TIMEOUT=str(shutdown),
        BRIDGE_LEASE_SECONDS="5",
    )
    bridge = Bridge(env=env, tmp=tmp)
    bridge.start()
    return bridge


@pytest.fixture
def stopper() -> Iterator[list[Bridge]]:
    """Bridges a test started; any still running at the end is killed."""
    bridges: list[Bridge] = []
    yield bridges
    for bridge in bridges:
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.kill()


def push_branches(bridge: Bridge, tag: str, count: int) -> dict[str, str]:
    """One push to each of ``count`` branches; the accepted commits by branch."""
    shas = {}
    for i in range(count):
        sha = fake_sha(f"{tag}-{i}")
        response = send_push(bridge.url, repository="acme/api", branch=f"{tag}-{i}", after=sha)
        assert (response.status_code, response.json()["status"]) == (202, "accepted")
        shas[f"{tag}-{i}"] = sha
    return shas


def sigterm(bridge: Bridge, *, within: float) -> tuple[int, float]:
    """Send SIGTERM; (exit status, seconds until the process ended)."""
    assert bridge.proc is not None
    started = time.monotonic()
    bridge.proc.send_signal(signal.SIGTERM)
    status = bridge.proc.wait(within)
    return status, time.monotonic() - started


def events(bridge: Bridge, name: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in bridge.logs().splitlines() if line.startswith("{"))
    return [event for event in lines if event.get("event") == name]


def settled(bridge: Bridge) -> bool:
    """No job waits to be created or cancelled."""
    waiting = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'creating') OR cancel_wanted"
    return bool(query_store(bridge.tmp / "bridge.db", waiting)[0][0] == 0)


def invocations_per_sha(emulator: Emulator) -> Counter[str]:
    return Counter(str(i["sha"]) for i in emulator.invocations())


def restart_and_settle(bridge: Bridge, emulator: Emulator, shas: dict[str, str]) -> Counter[str]:
    """Start the bridge again, let it finish the cut-off work; the invocations per commit."""
    bridge.start()
    wait_until(
        lambda: settled(bridge) and set(invocations_per_sha(emulator)) >= set(shas.values()), timeout=20
    )
    return invocations_per_sha(emulator)


def test_sigterm_lets_an_in_flight_create_finish_and_exits_0(
    tmp_path: Path, emulator: Emulator, stopper: list[Bridge]
) -> None:
    """Creates slower than nothing but shorter than the grace finish; exit 0 within the timeout."""
    bridge = start_bridge(tmp_path, emulator, shutdown=5, sync_timeout=5)
    stopper.append(bridge)
    emulator.faults([{"operation": "create_invocation", "kind": "delay", "seconds": 2, "times": -1}])
    shas = push_branches(bridge, "slow", 3)
    wait_until(lambda: emulator.requests("create_invocation") >= 3, timeout=10)
    status, took = sigterm(bridge, within=5 + MARGIN)
    assert status == 0
    assert took < 5 + MARGIN
    assert [e["cancelled_lanes"] for e in events(bridge, "worker.stopped")] == [0]
    assert invocations_per_sha(emulator) == Counter(shas.values())  # done before the process ended
    emulator.clear_faults()
    assert restart_and_settle(bridge, emulator, shas) == Counter(shas.values())


def test_sigterm_cuts_slow_creates_short_and_the_restart_adopts_them(
    tmp_path: Path, emulator: Emulator, stopper: list[Bridge]
) -> None:
    """Creates still unanswered when the grace ends are cancelled; the next start adopts, never re-creates."""
    bridge = start_bridge(tmp_path, emulator, shutdown=1, sync_timeout=10)
    stopper.append(bridge)
    emulator.faults(
        [{"operation": "create_invocation", "kind": "delay_after_commit", "seconds": 8, "times": -1}]
    )
    shas = push_branches(bridge, "cut", 3)
    wait_until(lambda: len(emulator.invocations()) == 3, timeout=10)  # created, answers held back
    status, took = sigterm(bridge, within=1 + MARGIN)
    assert status == 0
    assert took < 1 + MARGIN
    assert [e["cancelled_lanes"] for e in events(bridge, "worker.stopped")] == [3]
    creating = query_store(bridge.tmp / "bridge.db", "SELECT COUNT(*) FROM jobs WHERE state = 'creating'")
    assert creating == [(3,)]
    emulator.clear_faults()
    assert restart_and_settle(bridge, emulator, shas) == Counter(shas.values())
    assert len(events(bridge, "invocation.adopted")) == 3


def test_sigterm_refuses_new_connections_while_finishing(
    tmp_path: Path, emulator: Emulator, stopper: list[Bridge]
) -> None:
    """Once SIGTERM arrived, new connections are refused even while in-flight work still finishes."""
    bridge = start_bridge(tmp_path, emulator, shutdown=5, sync_timeout=5)
    stopper.append(bridge)
    emulator.faults([{"operation": "create_invocation", "kind": "delay", "seconds": 3, "times": -1}])
    shas = push_branches(bridge, "refuse", 1)
    wait_until(lambda: emulator.requests("create_invocation") >= 1, timeout=10)
    assert bridge.proc is not None
    bridge.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: "service.stopping" in bridge.logs(), timeout=5, interval=0.02)
    assert bridge.proc.poll() is None  # still finishing the create
    with pytest.raises(httpx.ConnectError):
        send_push(bridge.url, repository="acme/api", branch="late", after=fake_sha("late"))
    assert bridge.proc.poll() is None
    assert bridge.proc.wait(5 + MARGIN) == 0
    assert invocations_per_sha(emulator) == Counter(shas.values())
