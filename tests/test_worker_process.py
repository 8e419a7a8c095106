"""The worker in its own process (``BRIDGE_WORKER=process``): started, called, restarted and stopped by
the ingress. Real child processes, a real SQLite file, the emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest

from bridge.core.jobs import DeliveryRecord
from bridge.emulator.testing import RunningEmulator
from bridge.ipc import Answered, ChannelClosed, RemoteError
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.store.base import Accepted
from bridge.worker_process import RemoteStore, WorkerProcess, WorkerStartError
from tests.conftest import EMULATOR_TOKEN
from tests.factories import new_job, sha

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def settings_for(database: Path, emulator: RunningEmulator, **changes: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        webhook_secret="worker-process-test-secret",
        sync_token=EMULATOR_TOKEN,
        sync_url=emulator.base_url,
        database_url=f"sqlite:///{database}",
        lane_min_gap_seconds=0,
        **changes,
    )


def delivery(n: int) -> DeliveryRecord:
    return DeliveryRecord("1", f"delivery-{n}", "push", "acme/api", "refs/heads/main", sha(n), time.time())


def metric_value(text: str, name: str) -> float:
    """The value of an unlabelled sample in Prometheus text."""
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    assert len(values) == 1, name
    return values[0]


async def wait_for(predicate: Callable[[], bool], *, within: float = 15.0) -> None:
    """Poll ``predicate`` (the state of another process: no event to wait on)."""
    with anyio.fail_after(within):
        while True:
            if predicate():
                return
            await anyio.sleep(0.05)


@pytest.fixture
async def worker(tmp_path: Path, emulator: RunningEmulator) -> AsyncIterator[WorkerProcess]:
    emulator.state.reset()
    process = WorkerProcess(settings_for(tmp_path / "bridge.db", emulator), metrics=Metrics())
    await process.start()
    try:
        yield process
    finally:
        await process.stop(grace=5)


async def test_accepts_through_the_worker_process_become_invocations(
    worker: WorkerProcess, emulator: RunningEmulator
) -> None:
    """The ingress's accept is committed by the worker process, which then creates the invocation."""
    source = emulator.state.add_source(database_name="code", repository="acme/api")
    store = RemoteStore(worker)
    job = new_job(after=1, source_id=source, source_key=f"id:{source}", due_at=0.0)
    assert await store.accept(delivery(1), [job]) == Accepted()
    assert await store.accept(delivery(1), [job]) is None  # a redelivery, recognised by the store
    await wait_for(lambda: [i.sha for i in emulator.state.invocations.values()] == [sha(1)])
    await store.ping()
    counts = await store.counts()
    assert sum(counts.values()) == 1
    text = (await worker.call("metrics")).decode()
    assert 'bridge_sync_calls_total{operation="create_invocation",outcome="ok"} 1.0' in text
    # The worker process writes the database: it counts the group commits and the WAL's fsyncs.
    commits = metric_value(text, "bridge_store_commit_seconds_count")
    assert commits >= 2  # the accept at least, and the lane's writes
    assert metric_value(text, "bridge_store_sync_seconds_count") >= 1
    assert metric_value(text, "bridge_store_commit_requests_sum") >= commits
    assert "bridge_deliveries" not in text  # the ingress's families are rendered by the ingress


async def test_jobs_replaced_on_arrival_come_back_through_the_worker_process(worker: WorkerProcess) -> None:
    """The ids of the queued jobs a push replaced travel back to the ingress with the accept."""
    store = RemoteStore(worker)
    assert await store.accept(delivery(30), [new_job(before=29, after=30, due_at=1e12)]) == Accepted()
    replaced = await store.accept(delivery(31), [new_job(before=30, after=31, due_at=1e12)])
    assert replaced == Accepted((1,))  # the first job of a new database


async def test_accepts_of_one_turn_travel_as_one_call_and_each_gets_its_own_outcome(
    worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent accepts go to the worker process as one accept_many call (one frame each way); a
    redelivery, a new delivery and one the database refuses each get their own answer."""
    store = RemoteStore(worker)
    assert await store.accept(delivery(40), [new_job(after=40, due_at=1e12)]) == Accepted()
    calls: list[str] = []
    send = worker.send

    def counting(method: str, args: tuple[object, ...], answered: Answered) -> None:
        calls.append(method)
        send(method, args, answered)

    monkeypatch.setattr(worker, "send", counting)
    refused = new_job(after=42, due_at=1e12, lane=None)  # jobs.lane is NOT NULL
    outcomes = await asyncio.gather(
        store.accept(delivery(40), [new_job(after=40, due_at=1e12)]),
        store.accept(delivery(41), [new_job(after=41, due_at=1e12)]),
        store.accept(delivery(42), [refused]),
        store.accept(delivery(43), [new_job(before=41, after=43, due_at=1e12)]),
        return_exceptions=True,
    )
    assert calls == ["accept_many"]
    assert outcomes[0] is None
    assert outcomes[1] == Accepted()
    assert isinstance(outcomes[2], RemoteError)
    assert outcomes[2].kind == "IntegrityError"
    assert outcomes[3] == Accepted((2,))  # it follows delivery 41's push, queued in the same batch
    assert sum((await store.counts()).values()) == 3


async def test_a_killed_worker_process_is_restarted_and_nothing_is_lost(
    worker: WorkerProcess, emulator: RunningEmulator
) -> None:
    """SIGKILL of the worker process: calls fail meanwhile (never a false 'accepted'), it comes back,
    and what was accepted before is still stored."""
    store = RemoteStore(worker)
    assert await store.accept(delivery(10), [new_job(after=10, due_at=1e12)]) == Accepted()
    first = worker.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await wait_for(lambda: not worker.running, within=5)
    with pytest.raises(ChannelClosed):
        await store.accept(delivery(11), [new_job(after=11, due_at=1e12)])
    await wait_for(lambda: worker.running and worker.pid != first, within=30)
    assert worker.restarts == 1
    assert await store.accept(delivery(10), [new_job(after=10, due_at=1e12)]) is None  # still stored
    assert await store.accept(delivery(11), [new_job(after=11, due_at=1e12)]) == Accepted()
    assert sum((await store.counts()).values()) == 2


async def test_stop_ends_the_worker_process_cleanly(tmp_path: Path, emulator: RunningEmulator) -> None:
    """stop() asks the worker process to finish; it exits with status 0 and calls then fail."""
    process = WorkerProcess(settings_for(tmp_path / "bridge.db", emulator), metrics=Metrics())
    await process.start()
    pid = process.pid
    await process.stop(grace=1)
    assert not process.running
    assert process._process is not None
    assert process._process.returncode == 0
    with pytest.raises(ChannelClosed):
        await process.call("ping")
    with pytest.raises(ProcessLookupError):
        os.kill(pid or 0, 0)


async def test_a_worker_process_that_cannot_open_the_store_stops_the_start(
    tmp_path: Path, emulator: RunningEmulator
) -> None:
    """No store, no service: the start fails with an error instead of serving without a worker."""
    settings = settings_for(tmp_path / "missing-directory" / "bridge.db", emulator)
    process = WorkerProcess(settings, metrics=Metrics(), start_timeout=60)
    with pytest.raises(WorkerStartError, match="exit status 1"):
        await process.start()
    assert not process.running


async def test_a_wake_reaches_the_worker_process_at_once(tmp_path: Path, emulator: RunningEmulator) -> None:
    """The ingress's wake after an accept starts the work now, not at the next poll (a minute away here)."""
    emulator.state.reset()
    source = emulator.state.add_source(database_name="code", repository="acme/api")
    settings = settings_for(tmp_path / "bridge.db", emulator, poll_interval_seconds=60)
    process = WorkerProcess(settings, metrics=Metrics())
    await process.start()
    try:
        await anyio.sleep(
            0.5
        )  # the worker's first sweep has found nothing; it now waits for a wake or a minute
        job = new_job(after=20, source_id=source, source_key=f"id:{source}", due_at=0.0)
        assert await RemoteStore(process).accept(delivery(20), [job]) == Accepted()
        process.wake()
        await wait_for(lambda: [i.sha for i in emulator.state.invocations.values()] == [sha(20)], within=10)
    finally:
        await process.stop(grace=5)


def test_start_up_objects_are_frozen_out_of_the_collectors_sight() -> None:
    """Both processes freeze what start-up built, so a full collection does not walk it all again."""
    import gc

    from bridge.service import freeze_startup_objects

    before = gc.get_freeze_count()
    try:
        built = [{"route": n} for n in range(1000)]  # stands for the route table
        freeze_startup_objects()
        assert gc.get_freeze_count() >= before + len(built)
    finally:
        gc.unfreeze()


async def test_a_stalled_worker_process_logs_how_long_its_loop_was_held(
    tmp_path: Path, emulator: RunningEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """SIGSTOP of the worker process for 0.4 s, then SIGCONT: its loop-stall watcher logs a
    ``loop.stalled`` warning of at least 0.3 s, tagged with the worker process. (Started here, not by
    the fixture, so that its standard error is the one ``capfd`` reads.)"""
    process = WorkerProcess(settings_for(tmp_path / "bridge.db", emulator), metrics=Metrics())
    await process.start()
    try:
        pid = process.pid
        assert pid is not None
        await anyio.sleep(0.3)
        capfd.readouterr()
        os.kill(pid, signal.SIGSTOP)
        await anyio.sleep(0.4)
        os.kill(pid, signal.SIGCONT)
        seen = ""
        with anyio.move_on_after(10):
            while '"loop.stalled"' not in seen:
                await anyio.sleep(0.05)
                seen += capfd.readouterr().err
    finally:
        await process.stop(grace=5)
    lines = [json.loads(line) for line in seen.splitlines() if '"loop.stalled"' in line]
    assert len(lines) >= 1
    assert lines[0]["process"] == "worker"
    assert lines[0]["level"] == "warning"
    assert lines[0]["seconds"] >= 0.3
