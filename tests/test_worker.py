"""The worker against the Sync emulator over real loopback HTTP, driven step by step with a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from bridge.clients.sync import SyncClient
from bridge.core.jobs import DeliveryRecord, InvocationStatus, Job, JobState
from bridge.core.retry import RetryPolicy
from bridge.core.routing import SourceSpec
from bridge.emulator import EmulatorState, FaultRule
from bridge.emulator.testing import FakeClock, RunningEmulator
from bridge.metrics import Metrics
from bridge.worker import Worker, WorkerConfig
from tests.conftest import EMULATOR_TOKEN
from tests.factories import new_job, sha
from tests.fakes import MemoryStore

pytestmark = pytest.mark.anyio
_deliveries = itertools.count()
LANE_GAP = 1.0  # the tests that push again right after a create advance the clock past it


@dataclass
class Harness:
    store: MemoryStore
    worker: Worker
    clock: FakeClock
    state: EmulatorState
    source_id: str
    sync: SyncClient

    async def push(self, *, after: int, before: int, **changes: Any) -> None:
        """Accept a push the way the ingress does (a delivery and its job, due now)."""
        job = new_job(
            after=after, before=before, **{"due_at": self.clock(), "source_id": self.source_id, **changes}
        )
        delivery = DeliveryRecord(
            hook_id="1",
            delivery_id=f"d-{next(_deliveries)}",
            event="push",
            repository=job.repository,
            ref=f"refs/heads/{job.branch}",
            after=job.after,
            received_at=self.clock(),
        )
        assert await self.store.accept(delivery, [job])

    async def jobs(self) -> dict[str, Job]:
        """Jobs by commit."""
        return {job.after: job for job in await self.store.list_jobs(limit=10_000)}

    def invocations(self) -> list[dict[str, Any]]:
        return list(self.state.snapshot()["invocations"])

    def fault(self, **rule: Any) -> None:
        self.state.add_faults([FaultRule(**rule)])


@pytest.fixture
async def harness(
    emulator: RunningEmulator, state: EmulatorState, clock: FakeClock
) -> AsyncIterator[Harness]:
    source_id = state.add_source(database_name="code", repository="acme/api")
    state.configure(pending_seconds=3.0)
    store = MemoryStore()
    await store.open()
    async with SyncClient(base_url=emulator.base_url, token=EMULATOR_TOKEN, timeout=2.0) as sync:
        worker = Worker(
            store=store,
            sync=sync,
            config=WorkerConfig(
                owner="test", retry=RetryPolicy(base=1.0, cap=60.0, horizon=600.0), lane_gap=LANE_GAP
            ),
            clock=clock,
            rand=lambda: 0.5,
        )
        yield Harness(store=store, worker=worker, clock=clock, state=state, source_id=source_id, sync=sync)


async def test_push_creates_one_invocation_for_its_commit(harness: Harness) -> None:
    """A job becomes one invocation with ref_identifier sha = after and the job's collection name."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    [invocation] = harness.invocations()
    job = (await harness.jobs())[sha(1)]
    assert invocation["sha"] == sha(1)
    assert invocation["collection"] == job.collection
    assert (job.state, job.invocation_id) == (JobState.ACTIVE, invocation["id"])


async def test_created_invocation_is_logged_with_its_context(harness: Harness) -> None:
    """The invocation.created event carries delivery, repository, branch, sha, source and invocation ids."""
    await harness.push(after=1, before=0)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        await harness.worker.run_once()
    [event] = [e for e in logs if e["event"] == "invocation.created"]
    [invocation] = harness.invocations()
    assert event["invocation_id"] == invocation["id"]
    assert event["source_id"] == harness.source_id
    assert (event["repository"], event["branch"], event["sha"]) == ("acme/api", "main", sha(1))
    assert event["delivery_id"].startswith("d-")


async def test_waiting_pushes_coalesce_into_the_newest(harness: Harness) -> None:
    """Three chained pushes to one branch make one create call, for the newest commit: each push
    replaced the one before it as it was stored, so the worker sees only the newest."""
    for n in (1, 2, 3):
        await harness.push(after=n, before=n - 1)
    with capture_logs() as logs:
        await harness.worker.run_once()
    assert [i["sha"] for i in harness.invocations()] == [sha(3)]
    assert not [e for e in logs if e["event"] == "jobs.superseded"]  # nothing left for the worker
    jobs = await harness.jobs()
    assert {jobs[sha(1)].state, jobs[sha(2)].state} == {JobState.SUPERSEDED}
    assert harness.state.counters["create_invocation"] == 1


async def test_pushes_delivered_out_of_order_coalesce_in_the_worker(harness: Harness) -> None:
    """Deliveries arriving newest first follow nothing stored, so the worker's plan supersedes them."""
    for n in (3, 2, 1):
        await harness.push(after=n, before=n - 1)
    with capture_logs() as logs:
        await harness.worker.run_once()
    assert [i["sha"] for i in harness.invocations()] == [sha(3)]
    [line] = [e for e in logs if e["event"] == "jobs.superseded"]
    assert (line["count"], line["shas"]) == (2, [sha(2), sha(1)])
    jobs = await harness.jobs()
    assert {jobs[sha(1)].state, jobs[sha(2)].state} == {JobState.SUPERSEDED}
    assert harness.state.counters["create_invocation"] == 1


async def test_a_create_writes_its_supersedes_and_renews_its_lease_in_one_apply(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane cycle that supersedes and creates makes one fenced write before the create call: the
    supersedes, the ``creating`` mark and the lease renewal together (no renew_lane round trips)."""
    for n in (3, 2, 1):
        await harness.push(after=n, before=n - 1)
    calls: list[tuple[str, Any]] = []
    store = harness.store
    for name in ("claim_lane", "lane_snapshot", "renew_lane", "release_lane"):
        method = getattr(store, name)

        async def record(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
            calls.append((_name, None))
            return await _method(*args, **kwargs)

        monkeypatch.setattr(store, name, record)
    apply = store.apply

    async def record_apply(updates: Any, **kwargs: Any) -> bool:
        calls.append(("apply", ({u.fields.get("state") for u in updates}, len(updates), kwargs.get("lease"))))
        return await apply(updates, **kwargs)

    monkeypatch.setattr(store, "apply", record_apply)
    await harness.worker.run_once()
    lease = WorkerConfig(owner="test").lease
    assert calls[:5] == [
        ("claim_lane", None),
        ("lane_snapshot", None),
        ("apply", ({"superseded", "creating"}, 3, lease)),
        ("apply", ({"active"}, 1, None)),
        ("release_lane", None),
    ]
    assert [i["sha"] for i in harness.invocations()] == [sha(3)]
    jobs = await harness.jobs()
    assert {jobs[sha(1)].state, jobs[sha(2)].state} == {JobState.SUPERSEDED}


async def test_newer_push_cancels_the_older_pending_invocation(harness: Harness) -> None:
    """After creating, the older pending invocation of the lane is cancelled."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(LANE_GAP)
    await harness.push(after=2, before=1)
    await harness.worker.run_once()
    states = {i["sha"]: i["status"] for i in harness.invocations()}
    assert states == {sha(1): "cancelled", sha(2): "pending"}
    jobs = await harness.jobs()
    assert jobs[sha(1)].invocation_status is InvocationStatus.CANCELLED


async def test_a_create_and_the_cancels_it_causes_take_one_read_of_the_lane(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The superseded pending invocation is cancelled in the step that created the new one: the lane
    is read once per claim, not once more to find the cancel its own create just asked for."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(LANE_GAP)
    await harness.push(after=2, before=1)
    reads = 0
    snapshot = harness.store.lane_snapshot

    async def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await snapshot(*args, **kwargs)

    monkeypatch.setattr(harness.store, "lane_snapshot", counted)
    await harness.worker.run_once()
    assert reads == 1
    assert {i["sha"]: i["status"] for i in harness.invocations()} == {sha(1): "cancelled", sha(2): "pending"}
    assert (await harness.jobs())[sha(1)].cancel_wanted is False


async def test_cancel_too_late_is_expected_and_followed(harness: Harness) -> None:
    """An older invocation that already started answers 412; it is left to finish and tracked."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(3.5)  # pending -> processing in the emulator
    await harness.push(after=2, before=1)
    with capture_logs() as logs:
        await harness.worker.run_once()
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]
    job = (await harness.jobs())[sha(1)]
    assert (job.state, job.cancel_wanted) == (JobState.ACTIVE, False)
    assert job.invocation_status is InvocationStatus.PROCESSING
    harness.clock.advance(10)
    await harness.worker.track_once()
    assert (await harness.jobs())[sha(1)].invocation_status is InvocationStatus.COMPLETE


async def test_a_started_invocation_is_not_cancelled_again(harness: Harness) -> None:
    """After a 412, later creates in the lane do not send that invocation another cancel."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(3.5)  # the first invocation starts processing
    for n in (2, 3):
        await harness.push(after=n, before=n - 1)
        await harness.worker.run_once()
        harness.clock.advance(LANE_GAP)
    assert harness.state.counters["cancel_invocation"] == 2  # sha 1 once (412), sha 2 once (202)


async def test_late_delivery_of_an_older_push_creates_and_cancels_nothing(harness: Harness) -> None:
    """A delivery whose commit the newer push's before-chain reaches is superseded without a Sync call."""
    await harness.push(after=2, before=1)
    await harness.worker.run_once()
    harness.clock.advance(LANE_GAP)
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    assert [(i["sha"], i["status"]) for i in harness.invocations()] == [(sha(2), "pending")]
    assert (await harness.jobs())[sha(1)].state is JobState.SUPERSEDED


async def test_burst_ends_with_exactly_one_pending_invocation(harness: Harness) -> None:
    """A burst of pushes, worked while arriving, leaves one pending invocation: the newest."""
    for n in range(1, 41):
        await harness.push(after=n, before=n - 1)
        harness.clock.advance(0.1)
        await harness.worker.run_once()
    harness.clock.advance(LANE_GAP)
    await harness.worker.run_once()
    pending = [i["sha"] for i in harness.invocations() if i["status"] == "pending"]
    assert pending == [sha(40)]
    assert len(harness.invocations()) <= 5  # one create per lane gap (4 s of pushes), plus the last


async def test_burst_within_a_second_creates_at_most_two(harness: Harness) -> None:
    """100 pushes to one branch within one second, worked as they arrive, make at most 2 invocations."""
    for n in range(1, 101):
        await harness.push(after=n, before=n - 1)
        harness.clock.advance(0.009)
        await harness.worker.run_once()
    harness.clock.advance(LANE_GAP)
    await harness.worker.run_once()
    invocations = harness.invocations()
    assert len(invocations) <= 2
    assert [i["sha"] for i in invocations if i["status"] == "pending"] == [sha(100)]


def backoff_worker(harness: Harness, *, cap: float, metrics: Metrics | None = None) -> Worker:
    """A worker on the harness's store whose lane gap backs off up to ``cap`` (the service's default)."""
    config = WorkerConfig(owner="test", lane_gap=LANE_GAP, lane_gap_max=cap)
    return Worker(
        metrics=metrics,
        store=harness.store,
        sync=harness.sync,
        config=config,
        clock=harness.clock,
        rand=lambda: 0.5,
    )


async def _work(harness: Harness, worker: Worker) -> list[str]:
    """Work the due lanes; the commits with an invocation."""
    await worker.run_once()
    return [i["sha"] for i in harness.invocations()]


async def _push_and_work(harness: Harness, worker: Worker, n: int) -> list[str]:
    """Push commit ``n`` (following ``n - 1``), then :func:`_work`."""
    await harness.push(after=n, before=n - 1)
    return await _work(harness, worker)


def _backoffs(metrics: Metrics) -> float | None:
    return metrics.worker_registry.get_sample_value("bridge_lane_backoffs_total")


async def test_lane_gap_doubles_while_each_create_cancels_a_pending_invocation(harness: Harness) -> None:
    """Sync starts nothing (pending 10 minutes): every create cancels the one before it, so each in a
    row doubles the lane's hold, 1, 2, 4, 8 s, and no further than the cap."""
    harness.state.configure(pending_seconds=600.0)
    metrics = Metrics()
    worker = backoff_worker(harness, cap=8.0, metrics=metrics)
    created_at: dict[str, float] = {}
    with capture_logs() as logs:
        for n in range(1, 200):
            if len(created_at) == 7:
                break
            for commit in await _push_and_work(harness, worker, n):
                created_at.setdefault(commit, harness.clock())
            harness.clock.advance(0.5)
    starts = sorted(created_at.values())
    gaps = [round(later - earlier, 1) for earlier, later in itertools.pairwise(starts)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert [e["hold_seconds"] for e in logs if e["event"] == "lane.backoff"] == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert harness.state.counters["cancel_invocation"] == 6  # each create but the first cancelled one
    assert _backoffs(metrics) == 6.0


async def test_lane_gap_drops_back_once_a_create_cancels_nothing(harness: Harness) -> None:
    """Backed off to 4 s; meanwhile the lane's pending invocation starts, so the next create's cancel
    answers 412: that create cancelled nothing, and the lane is held for the base gap again."""
    harness.state.configure(pending_seconds=600.0)
    metrics = Metrics()
    worker = backoff_worker(harness, cap=8.0, metrics=metrics)
    assert sha(1) in await _push_and_work(harness, worker, 1)  # t=0, held 1 s
    harness.clock.advance(1.0)
    assert sha(2) in await _push_and_work(harness, worker, 2)  # t=1, cancels sha 1: held 2 s
    harness.clock.advance(2.0)
    harness.state.configure(pending_seconds=3.0)  # sha 3's invocation starts processing at t=6
    assert sha(3) in await _push_and_work(harness, worker, 3)  # t=3, cancels sha 2: held 4 s
    harness.clock.advance(3.9)
    assert sha(4) not in await _push_and_work(harness, worker, 4)  # t=6.9: still held
    harness.clock.advance(0.1)
    assert sha(4) in await _work(harness, worker)  # t=7: cancels nothing (sha 3 started at t=6)
    jobs = await harness.jobs()
    assert jobs[sha(2)].invocation_status is InvocationStatus.CANCELLED
    assert jobs[sha(3)].invocation_status is InvocationStatus.PROCESSING  # the cancel came too late
    harness.clock.advance(LANE_GAP)
    assert sha(5) in await _push_and_work(harness, worker, 5)  # t=8: held 1 s, not 8
    # Held longer after sha 2 and sha 3, not after sha 4; sha 5 cancels sha 4 (pending): 2 s again.
    assert _backoffs(metrics) == 3.0


async def test_lane_gap_backoff_off_by_default_in_the_worker_config(harness: Harness) -> None:
    """WorkerConfig without lane_gap_max keeps the fixed gap, whatever the creates cancel."""
    harness.state.configure(pending_seconds=600.0)
    for n in range(1, 5):
        assert sha(n) in await _push_and_work(harness, harness.worker, n)
        harness.clock.advance(LANE_GAP)
    assert harness.state.counters["cancel_invocation"] == 3


async def test_conflict_means_already_indexed(harness: Harness) -> None:
    """409 (the collection holds finished data) ends the job as already indexed."""
    await harness.push(after=1, before=0)
    job = (await harness.jobs())[sha(1)]
    harness.state.mark_finished("code", job.collection)
    await harness.worker.run_once()
    job = (await harness.jobs())[sha(1)]
    assert (job.state, job.invocation_status) == (JobState.DONE, InvocationStatus.ALREADY_INDEXED)
    assert harness.invocations() == []


async def test_rate_limit_is_retried_after_retry_after(harness: Harness) -> None:
    """A 429 with Retry-After is retried no sooner than asked, then succeeds."""
    harness.fault(operation="create_invocation", kind="status", status=429, retry_after=30)
    await harness.push(after=1, before=0)
    start = harness.clock()
    await harness.worker.run_once()
    job = (await harness.jobs())[sha(1)]
    assert job.state is JobState.QUEUED
    assert job.due_at >= start + 30
    harness.clock.advance(29)
    await harness.worker.run_once()
    assert harness.invocations() == []
    harness.clock.advance(2)
    await harness.worker.run_once()
    assert len(harness.invocations()) == 1


async def test_unknown_outcome_is_adopted_not_created_twice(harness: Harness) -> None:
    """A create whose answer was lost is found by collection name on retry: one invocation only."""
    harness.fault(operation="create_invocation", kind="drop_after_commit")
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    job = (await harness.jobs())[sha(1)]
    assert job.state is JobState.CREATING
    harness.clock.advance(60)
    with capture_logs() as logs:
        await harness.worker.run_once()
    [invocation] = harness.invocations()
    assert (await harness.jobs())[sha(1)].invocation_id == invocation["id"]
    assert any(e["event"] == "invocation.adopted" for e in logs)


async def test_replaced_unknown_outcome_is_adopted_then_cancelled(harness: Harness) -> None:
    """An older job left creating is looked up when a newer push arrives, and its invocation cancelled."""
    harness.fault(operation="create_invocation", kind="drop_after_commit")
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    await harness.push(after=2, before=1)
    harness.clock.advance(0.6)  # past the retry delay, still pending in Sync
    await harness.worker.run_once()
    states = {i["sha"]: i["status"] for i in harness.invocations()}
    assert states == {sha(1): "cancelled", sha(2): "pending"}


@pytest.mark.parametrize(("status", "reason"), [(400, "sync_bad_request"), (404, "sync_not_found")])
async def test_permanent_errors_fail_the_job_with_syncs_message(
    harness: Harness, status: int, reason: str
) -> None:
    """400 and 404 fail the job at once, keeping Sync's message, with a log event naming the reason."""
    harness.fault(operation="create_invocation", kind="status", status=status)
    await harness.push(after=1, before=0)
    with capture_logs() as logs:
        await harness.worker.run_once()
    job = (await harness.jobs())[sha(1)]
    assert job.state is JobState.FAILED
    assert str(status) in (job.error or "")
    assert any(e["event"] == "job.failed" and e["reason"] == reason for e in logs)


async def test_failed_job_does_not_block_other_branches(harness: Harness) -> None:
    """A failing lane leaves another branch's lane free to be created."""
    harness.fault(operation="create_invocation", kind="status", status=400)
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    await harness.push(after=9, before=8, lane="other", branch="dev")
    await harness.worker.run_once()
    assert [i["sha"] for i in harness.invocations()] == [sha(9)]


async def test_unknown_source_fails_permanently(harness: Harness) -> None:
    """A route naming a source that does not exist fails with 404, not forever retried."""
    await harness.push(after=1, before=0, source_id="00000000-0000-4000-8000-000000000000")
    await harness.worker.run_once()
    assert (await harness.jobs())[sha(1)].state is JobState.FAILED


async def test_wrong_token_is_loud_and_retried(
    harness: Harness, emulator: RunningEmulator, clock: FakeClock
) -> None:
    """401 logs an error and keeps the job for later, instead of losing the push."""
    async with SyncClient(base_url=emulator.base_url, token="wrong", timeout=2.0) as bad_sync:
        worker = Worker(store=harness.store, sync=bad_sync, config=WorkerConfig(owner="t2"), clock=clock)
        await harness.push(after=1, before=0)
        with capture_logs() as logs:
            await worker.run_once()
    job = (await harness.jobs())[sha(1)]
    assert job.state is JobState.QUEUED
    assert any(e["log_level"] == "error" and e["reason"] == "sync_auth" for e in logs)
    assert "wrong" not in repr(logs)


async def test_retries_give_up_after_the_horizon(harness: Harness) -> None:
    """A job that keeps failing with 503 is dead once the next retry would pass the horizon."""
    harness.fault(operation="create_invocation", kind="status", status=503, times=-1)
    await harness.push(after=1, before=0)
    for _ in range(40):
        await harness.worker.run_once()
        harness.clock.advance(61)
    job = (await harness.jobs())[sha(1)]
    assert job.state is JobState.DEAD
    assert harness.invocations() == []


async def test_dropped_connection_before_create_is_retried(harness: Harness) -> None:
    """A connection dropped before Sync acted leaves the job to retry, and it converges to one invocation."""
    harness.fault(operation="create_invocation", kind="drop")
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(60)
    await harness.worker.run_once()
    assert len(harness.invocations()) == 1


async def test_tracker_follows_an_invocation_to_complete(harness: Harness) -> None:
    """Polling moves the job through processing to done with status complete."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(6)
    await harness.worker.track_once()
    job = (await harness.jobs())[sha(1)]
    assert (job.state, job.invocation_status) == (JobState.DONE, InvocationStatus.COMPLETE)


async def test_tracker_records_a_failed_invocation(harness: Harness) -> None:
    """An invocation that fails in Sync ends the job as done with status failed and the error."""
    harness.state.configure(failing_repositories=["acme/api"])
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    harness.clock.advance(10)
    await harness.worker.track_once()
    job = (await harness.jobs())[sha(1)]
    assert job.invocation_status is InvocationStatus.FAILED
    assert job.error


async def test_debounce_waits_for_the_last_push(harness: Harness) -> None:
    """With a debounce, nothing is created until the newest push's due time; then only it."""
    await harness.push(after=1, before=0, due_at=harness.clock() + 2)
    await harness.push(after=2, before=1, due_at=harness.clock() + 2)
    await harness.worker.run_once()
    assert harness.invocations() == []
    harness.clock.advance(2)
    await harness.worker.run_once()
    assert [i["sha"] for i in harness.invocations()] == [sha(2)]


async def test_described_source_is_found_or_created_once(harness: Harness) -> None:
    """A described route's source is created on the first push and reused after."""
    spec = SourceSpec(database_name="code", include_globs=("**/*.py",))
    changes = {"source_id": None, "source_spec": spec.to_json(), "source_key": spec.key("acme/web")}
    await harness.push(after=1, before=0, repository="acme/web", lane="web", **changes)
    await harness.worker.run_once()
    await harness.push(after=2, before=1, repository="acme/web", lane="web", **changes)
    await harness.worker.run_once()
    web_sources = [s for s in harness.state.snapshot()["sources"] if s["repository"] == "acme/web"]
    assert len(web_sources) == 1
    assert harness.state.counters["create_source"] == 1
    assert {i["source_id"] for i in harness.invocations()} == {web_sources[0]["id"]}


async def test_duplicate_job_for_an_in_flight_commit_creates_nothing(harness: Harness) -> None:
    """The same commit delivered through a second hook makes no second invocation."""
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    await harness.push(after=1, before=0)
    await harness.worker.run_once()
    assert len(harness.invocations()) == 1


async def test_leased_lane_waits_for_its_lease_to_expire(harness: Harness) -> None:
    """A lane leased by another replica is left alone until the lease expires, then taken over."""
    await harness.push(after=1, before=0)
    assert await harness.store.claim_lane(owner="dead-replica", now=harness.clock(), lease=60) is not None
    await harness.worker.run_once()
    assert harness.invocations() == []
    harness.clock.advance(61)
    await harness.worker.run_once()
    assert len(harness.invocations()) == 1
