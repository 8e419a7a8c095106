"""The worker: turns stored jobs into Chroma Sync invocations and follows them to their end.

Three loops run side by side in the serving process (or in several processes on one PostgreSQL):

* **lanes**: claim a lane (one route's source and branch) whose earliest job is due, ask the pure
  core (``bridge.core.supersede.plan_lane``) what to do, do it, release the lane. At most
  ``concurrency`` lanes at a time per process; a lane is held by one worker in all replicas.
* **tracker**: polls active invocations whose ``poll_at`` has come, with gaps growing with age,
  until they complete, fail or are cancelled.
* **pruner**: drops delivery ids and finished jobs past the retention window.

The create protocol (exactly once in effect, across crashes, retries and replicas)
-------------------------------------------------------------------------------------
1. The collection name is decided at ingress and stored with the job; it is unique per route and
   commit, so it names the intended invocation.
2. Before calling create, the job moves to ``creating`` in a committed, lane-fenced transaction that
   also renews the lease (and, usually, supersedes the jobs the new push replaced).
3. Create. On success the invocation id is recorded (``active``) in the same transaction that
   marks the lane's older pending invocations ``cancel_wanted``; they are then cancelled in the same
   step (202 cancelled, 412 already started: keep following it). A cancel that fails stays
   ``cancel_wanted`` and due, so the next claim of the lane tries again.
4. If the outcome is unknown (timeout, dropped connection, 5xx, or a crash anywhere after step 2),
   the job stays ``creating``. Whoever next works the lane (this process later, a restarted one,
   or another replica once the lease expired) first lists the source's invocations for that
   collection name and adopts the one it finds; only if there is none does it create again.
5. 409 means the collection already holds finished data for this commit: done, nothing created.
6. Errors: 429/5xx/transport errors retry with full-jitter backoff (``Retry-After`` honoured) until
   the retry horizon, then ``dead``; 401/403 retry the same way but log loudly (a configuration
   problem must not lose pushes); 400/404 are ``failed`` with Sync's message. Failed and dead jobs
   stay visible and can be requeued (``bridge jobs requeue``).

A lease that expires mid-job (the process died or stalled) is taken over by the next claimer;
fenced writes make the stale holder's later writes no-ops.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from bridge.clients.sync import SyncClient
from bridge.clients.sync_errors import (
    SyncConflict,
    SyncError,
    SyncForbidden,
    SyncNotFound,
    SyncPreconditionFailed,
    SyncUnauthorized,
)
from bridge.core.jobs import InvocationStatus, Job, JobState
from bridge.core.lanegap import lane_hold
from bridge.core.retry import RetryPolicy
from bridge.core.routing import SourceSpec
from bridge.core.supersede import LanePlan, plan_lane, to_cancel
from bridge.metrics import Metrics
from bridge.sources import SourceResolver
from bridge.store.base import FieldValue, JobUpdate, Store

log = structlog.get_logger("bridge.worker")

Clock = Callable[[], float]
HISTORY = 50
MAX_STEPS = 8
PRUNE_EVERY = 3_600.0
PRUNE_BATCH = 500  # deliveries and finished jobs deleted per transaction (see Worker.prune_once)
PRUNE_PAUSE = 0.1  # seconds between two batches


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    owner: str
    concurrency: int = 8
    lease: float = 60.0
    poll_interval: float = 1.0
    track_min: float = 5.0
    track_max: float = 300.0
    retention: float = 7 * 86_400.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lane_gap: float = 1.0  # after a create, the lane is not claimed again for this long (coalescing)
    # The hold doubles, up to this, for each create in a row that cancels the lane's previous invocation
    # before Sync started it (bridge.core.lanegap); at most lane_gap (the default): no backoff.
    lane_gap_max: float = 0.0
    # Wake-ups closer together than this share one sweep for due lanes: under a burst the ingress wakes
    # the worker after every accept, and a claim query per delivery would cost more than it finds.
    sweep_gap: float = 0.005


class LaneLost(Exception):
    """The lane's lease expired and another worker took it; stop working it."""


def _status(value: str) -> InvocationStatus:
    try:
        return InvocationStatus(value)
    except ValueError:
        return InvocationStatus.PENDING


class Worker:
    def __init__(
        self,
        *,
        store: Store,
        sync: SyncClient,
        config: WorkerConfig,
        clock: Clock,
        metrics: Metrics | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._sync = sync
        self._config = config
        self._clock = clock
        self._rand = rand
        self._metrics = metrics or Metrics()
        self._sources = SourceResolver(store=store, sync=sync)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lanes: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._working: set[str] = set()  # lanes a task of this process is working right now
        # Lanes whose last creates cancelled their predecessors before Sync started them: how many in a
        # row (bridge.core.lanegap). Only this process's own view: a lane another replica claims next
        # starts again at the base gap. One small int per lane in backoff, dropped when it ends.
        self._wasted: dict[str, int] = {}

    # ----------------------------------------------------------------- lifecycle
    def wake(self) -> None:
        """Tell the worker new work may be due (the ingress calls this after each accept)."""
        self._wake.set()

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._guard("lanes", self._lane_loop)),
            asyncio.create_task(self._guard("tracker", self._track_loop)),
            asyncio.create_task(self._guard("pruner", self._prune_loop)),
        ]

    async def stop(self, *, grace: float) -> None:
        """Stop claiming, give in-flight lanes ``grace`` seconds, then cancel them.

        A cancelled lane loses nothing: a job cut off mid-create stays ``creating`` and is resolved by
        lookup on the next claim; the lease is released (or expires) so the lane is picked up again.
        """
        self._stopping.set()
        self._wake.set()
        lanes = set(self._lanes)
        if lanes:
            _, pending = await asyncio.wait(lanes, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        log.info("worker.stopped", cancelled_lanes=sum(1 for t in lanes if t.cancelled()))

    async def _guard(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Keep a loop alive across unexpected errors (a database restart, say), with a pause."""
        while not self._stopping.is_set():
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker.loop_error", loop=name)
                await self._sleep(min(5.0, self._config.poll_interval * 5))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def run_once(self, *, limit: int = 1_000) -> int:
        """Claim and work every due lane, one at a time, until none is due; the number worked.

        The loops do the same concurrently; this is for tests and tools that drive time themselves.
        """
        worked = 0
        while worked < limit:
            lane = await self._store.claim_lane(
                owner=self._config.owner, now=self._clock(), lease=self._config.lease
            )
            if lane is None:
                break
            await self._work_lane(lane)
            worked += 1
        return worked

    async def track_once(self) -> int:
        """Poll every invocation whose poll time has come, once; the number polled."""
        due = await self._store.due_polls(now=self._clock(), limit=1_000)
        for job in due:
            await self._track(job)
        return len(due)

    # ----------------------------------------------------------------- lanes
    async def _lane_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sweep = -math.inf
        while not self._stopping.is_set():
            pause = last_sweep + self._config.sweep_gap - loop.time()
            if pause > 0:
                await self._sleep(pause)
            last_sweep = loop.time()
            self._wake.clear()
            while len(self._lanes) < self._config.concurrency and not self._stopping.is_set():
                lane = await self._store.claim_lane(
                    owner=self._config.owner, now=self._clock(), lease=self._config.lease
                )
                if lane is None:
                    break
                if lane in self._working:
                    # Our lease ran out under a task still working the lane; the claim only renewed it. A
                    # second task would act on a stale plan, and fences cannot tell two tasks of one owner.
                    continue
                task = asyncio.create_task(self._work_lane(lane))
                self._lanes.add(task)
                task.add_done_callback(self._lane_done)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._config.poll_interval)

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        self._lanes.discard(task)
        self._wake.set()

    async def _work_lane(self, lane: str) -> None:
        bound = structlog.contextvars.bound_contextvars(lane=lane)
        self._working.add(lane)
        with bound:
            hold_until: float | None = None
            try:
                for _ in range(MAX_STEPS):
                    jobs, history = await self._store.lane_snapshot(lane, history=HISTORY)
                    plan = plan_lane(jobs, now=self._clock(), history=history)
                    if hold_until is not None and plan.create is not None:
                        # One create per claim: pushes arriving meanwhile wait out the lane's gap and
                        # are coalesced into the newest (cancels and look-ups still go ahead).
                        plan = replace(plan, create=None)
                    progress, created, cancelled = await self._step(lane, jobs, plan)
                    if created:
                        hold = self._hold_after_create(lane, cancelled=cancelled)
                        if hold > 0:
                            hold_until = self._clock() + hold
                    if not progress:
                        break
            except LaneLost:
                log.warning("lane.lost")
            except Exception:
                log.exception("lane.error")
            finally:
                self._working.discard(lane)
                release = self._store.release_lane(lane, owner=self._config.owner, hold_until=hold_until)
                with contextlib.suppress(Exception):
                    await asyncio.shield(release)

    def _hold_after_create(self, lane: str, *, cancelled: int) -> float:
        """Seconds to hold ``lane`` after a create that cancelled ``cancelled`` pending invocations."""
        wasted = self._wasted.pop(lane, 0) + 1 if cancelled else 0
        hold = lane_hold(base=self._config.lane_gap, cap=self._config.lane_gap_max, wasted=wasted)
        if hold > self._config.lane_gap:
            self._wasted[lane] = wasted
            self._metrics.lane_backoffs.inc()
            log.info("lane.backoff", hold_seconds=round(hold, 3), wasted_in_a_row=wasted)
        return hold

    async def _step(self, lane: str, jobs: Sequence[Job], plan: LanePlan) -> tuple[bool, bool, int]:
        """Carry out one plan: (the lane may have more to do now, an invocation was created or adopted,
        how many of the lane's pending invocations that create cancelled)."""
        by_id = {job.id: job for job in jobs}
        now = self._clock()
        updates = [
            JobUpdate(job_id, {"state": JobState.SUPERSEDED.value, "error": "superseded by a newer push"})
            for job_id in plan.supersede
        ]
        if plan.duplicate is not None:
            updates.append(
                JobUpdate(
                    plan.duplicate,
                    {"state": JobState.SUPERSEDED.value, "error": "this commit is already in flight"},
                )
            )
        creating = by_id[plan.create] if plan.create is not None else None
        # When the create writes first, the supersedes go with its `creating` mark (one transaction that
        # also renews the lease); otherwise they are written now.
        fold = creating is not None and self._writes_first(creating)
        if updates and not fold:
            await self._apply(updates, now=now)
            self._superseded([by_id[update.job_id] for update in updates])
        for job_id in plan.orphans:
            await self._resolve_orphan(by_id[job_id])
        for job_id in plan.cancel:
            await self._cancel(by_id[job_id])
        if creating is not None:
            if fold:
                cancels = await self._create(creating, jobs, supersede=updates)
            else:
                await self._renew(lane)  # resolving a source or looking up may take a while
                cancels = await self._create(creating, jobs)
            if cancels is None:
                return True, False, 0
            # The invocations the new one supersedes are marked cancel_wanted (durably, due now): cancel
            # them in this step rather than reading the lane again for a plan that would say just that
            # (the lane is held after a create, so nothing else in it is due before the next claim).
            cancelled = 0
            for job_id in cancels:
                if await self._cancel(by_id[job_id]):
                    cancelled += 1
            return bool(plan.orphans), True, cancelled
        return bool(plan.orphans), False, 0

    def _superseded(self, replaced: Sequence[Job]) -> None:
        """Log and count jobs just marked superseded: one line per step, not per job (a burst supersedes
        hundreds at once)."""
        if not replaced:
            return
        log.info(
            "jobs.superseded",
            count=len(replaced),
            repository=replaced[0].repository,
            branch=replaced[0].branch,
            job_ids=[job.id for job in replaced],
            shas=[job.after for job in replaced],
        )
        self._metrics.jobs_finished.labels(state="superseded", status="none").inc(len(replaced))

    async def _apply(self, updates: list[JobUpdate], *, now: float, renew: bool = False) -> None:
        """A fenced apply (``LaneLost`` if the lease is gone); ``renew``: it also renews the lease."""
        lease = self._config.lease if renew else None
        if not await self._store.apply(updates, now=now, owner=self._config.owner, lease=lease):
            raise LaneLost()

    async def _renew(self, lane: str) -> None:
        now = self._clock()
        if not await self._store.renew_lane(
            lane, owner=self._config.owner, now=now, lease=self._config.lease
        ):
            raise LaneLost()

    async def _source_id(self, job: Job) -> str:
        if job.source_id is not None:
            return job.source_id
        if job.source_spec is None:  # pragma: no cover - the ingress always sets one of the two
            raise ValueError(f"job {job.id} has neither a source id nor a source description")
        source_id = await self._sources.resolve(
            key=job.source_key, spec=SourceSpec.from_json(job.source_spec), repository=job.repository
        )
        await self._apply([JobUpdate(job.id, {"source_id": source_id})], now=self._clock())
        return source_id

    @staticmethod
    def _writes_first(job: Job) -> bool:
        """``_create``'s first store call for ``job`` is its ``creating`` mark: a queued job (no invocation
        to look for) whose source is known (none to resolve). Only then can it carry the step's
        supersedes."""
        return job.state is JobState.QUEUED and job.source_id is not None

    async def _create(
        self, job: Job, lane_jobs: Sequence[Job], *, supersede: Sequence[JobUpdate] = ()
    ) -> list[int] | None:
        """Create (or adopt) the job's invocation. ``None`` when the lane has no new invocation, else the
        ids of the lane's older pending invocations it superseded (marked ``cancel_wanted``).

        ``supersede``: the step's updates of the jobs it replaced, written with the ``creating`` mark
        (passed only when :meth:`_writes_first`)."""
        ctx = structlog.contextvars.bound_contextvars(
            job_id=job.id, delivery_id=job.delivery_id, repository=job.repository, branch=job.branch,
            sha=job.after, collection=job.collection,
        )  # fmt: skip
        with ctx:
            try:
                source_id = await self._source_id(job)
                with structlog.contextvars.bound_contextvars(source_id=source_id):
                    invocation_id = None
                    if job.state is JobState.CREATING:
                        found = await self._sync.find_invocation(source_id, collection=job.collection)
                        self._count("find_invocation", None)
                        if found is not None:
                            invocation_id = found.id
                            log.info("invocation.adopted", invocation_id=invocation_id)
                    if invocation_id is None:
                        first = job.first_attempt_at if job.first_attempt_at is not None else self._clock()
                        mark = JobUpdate(
                            job.id,
                            {
                                "state": JobState.CREATING.value,
                                "attempts": job.attempts + 1,
                                "first_attempt_at": first,
                            },
                        )
                        # Renewed in the same transaction: the lease must outlast the create call.
                        await self._apply([*supersede, mark], now=self._clock(), renew=True)
                        if supersede:
                            by_id = {other.id: other for other in lane_jobs}
                            self._superseded([by_id[update.job_id] for update in supersede])
                        invocation_id = await self._sync.create_invocation(
                            source_id, collection=job.collection, sha=job.after
                        )
                        self._count("create_invocation", None)
                        log.info("invocation.created", invocation_id=invocation_id)
                    return await self._record_created(job, invocation_id, lane_jobs)
            except SyncConflict:
                self._count("create_invocation", "conflict")
                log.info("job.already_indexed")
                await self._finish(job, JobState.DONE, InvocationStatus.ALREADY_INDEXED, None)
            except SyncError as exc:
                self._count("create_invocation", exc.reason)
                await self._failed_call(job, exc)
            return None

    async def _record_created(self, job: Job, invocation_id: str, lane_jobs: Sequence[Job]) -> list[int]:
        now = self._clock()
        updates = [
            JobUpdate(
                job.id,
                {
                    "state": JobState.ACTIVE.value,
                    "invocation_id": invocation_id,
                    "invocation_status": InvocationStatus.PENDING.value,
                    "poll_at": now + self._config.track_min,
                    "error": None,
                },
            )
        ]
        cancels = to_cancel(lane_jobs, created=job.id)
        updates += [JobUpdate(other, {"cancel_wanted": True, "due_at": now}) for other in cancels]
        await self._apply(updates, now=now)
        self._metrics.push_to_invocation.observe(max(0.0, now - job.received_at))
        return cancels

    async def _failed_call(self, job: Job, exc: SyncError) -> None:
        now = self._clock()
        if not exc.retryable and not isinstance(exc, SyncUnauthorized | SyncForbidden):
            log.warning("job.failed", reason=exc.reason, error=str(exc))
            await self._finish(job, JobState.FAILED, None, str(exc))
            return
        attempts = job.attempts + 1
        first = job.first_attempt_at if job.first_attempt_at is not None else now
        retry_after = getattr(exc, "retry_after", None)
        delay = self._config.retry.delay(attempts, rand=self._rand(), retry_after=retry_after)
        if self._config.retry.gives_up(first_attempt_at=first, retry_at=now + delay):
            log.error("job.dead", reason=exc.reason, error=str(exc), attempts=attempts)
            await self._finish(job, JobState.DEAD, None, str(exc))
            return
        level = log.error if isinstance(exc, SyncUnauthorized | SyncForbidden) else log.warning
        level("job.retry", reason=exc.reason, error=str(exc), attempts=attempts, delay=round(delay, 3))
        unknown = exc.outcome_unknown or job.state is JobState.CREATING
        state = JobState.CREATING if unknown else JobState.QUEUED
        await self._apply(
            [
                JobUpdate(
                    job.id,
                    {
                        "state": state.value,
                        "attempts": attempts,
                        "first_attempt_at": first,
                        "due_at": now + delay,
                        "error": str(exc),
                    },
                )
            ],
            now=now,
        )

    async def _finish(
        self, job: Job, state: JobState, status: InvocationStatus | None, error: str | None
    ) -> None:
        fields: dict[str, FieldValue] = {"state": state.value, "error": error, "cancel_wanted": False}
        if status is not None:
            fields["invocation_status"] = status.value
        await self._apply([JobUpdate(job.id, fields)], now=self._clock())
        self._metrics.jobs_finished.labels(state=state.value, status=status.value if status else "none").inc()

    async def _resolve_orphan(self, job: Job) -> None:
        """A replaced job whose create call may have happened: adopt-and-cancel, or supersede."""
        try:
            source_id = await self._source_id(job)
            found = await self._sync.find_invocation(source_id, collection=job.collection)
        except SyncError as exc:
            await self._failed_call(job, exc)
            return
        if found is None:
            await self._finish(job, JobState.SUPERSEDED, None, "superseded by a newer push")
            return
        log.info("invocation.adopted", job_id=job.id, invocation_id=found.id, superseded=True)
        now = self._clock()
        await self._apply(
            [
                JobUpdate(
                    job.id,
                    {
                        "state": JobState.ACTIVE.value,
                        "invocation_id": found.id,
                        "invocation_status": _status(found.status.state).value,
                        "poll_at": now + self._config.track_min,
                        "cancel_wanted": True,
                        "due_at": now,
                    },
                )
            ],
            now=now,
        )

    async def _cancel(self, job: Job) -> bool:
        """Cancel the job's pending invocation and record the outcome; whether Sync cancelled it."""
        now = self._clock()
        ctx = structlog.contextvars.bound_contextvars(job_id=job.id, invocation_id=job.invocation_id)
        with ctx:
            if job.invocation_id is None:  # pragma: no cover - only active jobs are marked
                await self._apply([JobUpdate(job.id, {"cancel_wanted": False})], now=now)
                return False
            try:
                await self._sync.cancel_invocation(job.invocation_id)
            except SyncPreconditionFailed:
                self._count("cancel_invocation", "not_pending")
                log.info("invocation.cancel_too_late")
                # 412: no longer pending. Record that, so a later create does not try to cancel it again;
                # the tracker follows it to its end.
                fields: dict[str, FieldValue] = {
                    "cancel_wanted": False,
                    "invocation_status": InvocationStatus.PROCESSING.value,
                }
                await self._apply([JobUpdate(job.id, fields)], now=now)
                return False
            except SyncNotFound as exc:
                self._count("cancel_invocation", exc.reason)
                await self._finish(job, JobState.DONE, None, str(exc))
                return False
            except SyncError as exc:
                self._count("cancel_invocation", exc.reason)
                attempt = max(1, job.attempts)
                delay = self._config.retry.delay(attempt, rand=self._rand(), retry_after=None)
                log.warning("invocation.cancel_retry", reason=exc.reason, delay=round(delay, 3))
                await self._apply([JobUpdate(job.id, {"due_at": now + max(delay, 1.0)})], now=now)
                return False
            self._count("cancel_invocation", None)
            log.info("invocation.cancelled")
            await self._finish(job, JobState.DONE, InvocationStatus.CANCELLED, None)
            return True

    def _count(self, operation: str, outcome: str | None) -> None:
        self._metrics.sync_calls.labels(operation=operation, outcome=outcome or "ok").inc()

    # ----------------------------------------------------------------- tracker
    async def _track_loop(self) -> None:
        while not self._stopping.is_set():
            due = await self._store.due_polls(now=self._clock(), limit=100)
            for job in due:
                if self._stopping.is_set():
                    return
                await self._track(job)
            if len(due) < 100:
                await self._sleep(self._config.poll_interval)

    def _next_poll(self, job: Job, now: float) -> float:
        age = now - (job.first_attempt_at or job.received_at)
        return now + min(self._config.track_max, max(self._config.track_min, age / 4))

    async def _track(self, job: Job) -> None:
        if job.invocation_id is None:  # pragma: no cover - active jobs always carry one
            return
        now = self._clock()
        ctx = structlog.contextvars.bound_contextvars(
            job_id=job.id, invocation_id=job.invocation_id, repository=job.repository, sha=job.after
        )
        with ctx:
            try:
                invocation = await self._sync.get_invocation(job.invocation_id)
            except SyncNotFound as exc:
                self._count("get_invocation", exc.reason)
                await self._store.apply(
                    [JobUpdate(job.id, {"state": JobState.DONE.value, "poll_at": None, "error": str(exc)})],
                    now=now,
                )
                return
            except SyncError as exc:
                self._count("get_invocation", exc.reason)
                await self._store.apply([JobUpdate(job.id, {"poll_at": self._next_poll(job, now)})], now=now)
                return
            self._count("get_invocation", None)
            status = _status(invocation.status.state)
            if status.terminal:
                log.info(f"invocation.{status.value}", error=invocation.status.error)
                self._metrics.jobs_finished.labels(state="done", status=status.value).inc()
                fields: dict[str, FieldValue] = {
                    "state": JobState.DONE.value,
                    "invocation_status": status.value,
                    "poll_at": None,
                    "cancel_wanted": False,
                    "error": invocation.status.error,
                }
            else:
                fields = {"invocation_status": status.value, "poll_at": self._next_poll(job, now)}
            await self._store.apply([JobUpdate(job.id, fields)], now=now)

    # ----------------------------------------------------------------- pruner
    async def prune_once(self) -> tuple[int, int]:
        """Drop delivery ids and finished jobs older than the retention window, once.

        Returns (deliveries, jobs) deleted. The pruner loop calls this every hour.

        In batches of ``PRUNE_BATCH`` of each, ``PRUNE_PAUSE`` apart: with SQLite every store request
        waits for the transaction before it, and one transaction for an hour's deliveries would hold
        the answers for as long as it takes: 3.7-5.2 us a row in ``bench/prune.py``, so at 300 deliveries
        a second (a delivery and a job each) an hourly prune would hold them ~10 s, GitHub's timeout.
        A batch took 13-26 ms there and in ``bench/memory.py``; between batches the other requests go
        first.
        """
        cutoff = self._clock() - self._config.retention
        deliveries = jobs = batches = 0
        while True:
            batch = await self._store.prune(deliveries_before=cutoff, jobs_before=cutoff, limit=PRUNE_BATCH)
            deliveries, jobs, batches = deliveries + batch[0], jobs + batch[1], batches + 1
            if max(batch) < PRUNE_BATCH or self._stopping.is_set():
                break
            await self._sleep(PRUNE_PAUSE)
        if deliveries or jobs:
            log.info("store.pruned", deliveries=deliveries, jobs=jobs, batches=batches)
        return deliveries, jobs

    async def _prune_loop(self) -> None:
        while not self._stopping.is_set():
            await self.prune_once()
            await self._sleep(PRUNE_EVERY)
