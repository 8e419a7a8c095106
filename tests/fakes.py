"""Hand-written fakes of the bridge's ports, one honest implementation each, shared by every test folder.

- :class:`MemoryStore`: the Store port in memory. It passes the same contract suite as the SQLite and
  PostgreSQL stores (``tests/store/test_contract.py``), so a worker test that passes against it
  relies on nothing a real store would not do.

Add further fakes (Sync API, GitHub API, clock) here rather than copying them into test files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bridge.core.jobs import WAITING_STATES, DeliveryRecord, InvocationStatus, Job, JobState, NewJob
from bridge.core.supersede import Link, superseded_on_arrival
from bridge.store.base import (
    Accepted,
    JobUpdate,
    LaneSnapshot,
    StoreClosed,
    check_apply,
    each_outcome,
)

_LIVE_STATES = WAITING_STATES | {JobState.ACTIVE}
_FINISHED_STATES = frozenset({JobState.DONE, JobState.SUPERSEDED})


@dataclass
class Lane:
    """A lane's row: when its earliest due job is due, and who leases it until when."""

    next_due: float | None = None
    owner: str | None = None
    lease_until: float | None = None
    hold_until: float | None = None  # claims skip the lane until then


class MemoryStore:
    """The Store port in memory; every method is atomic because it never awaits mid-way.

    Tests may read (not write) ``deliveries``, ``jobs``, ``lanes`` and ``sources``, and set
    ``ping_error`` to make ``ping`` fail as an unreachable database would.
    """

    def __init__(self) -> None:
        self.deliveries: dict[tuple[str, str], DeliveryRecord] = {}
        self.jobs: dict[int, Job] = {}
        self.lanes: dict[str, Lane] = {}
        self.sources: dict[str, str] = {}
        self.ping_error: Exception | None = None
        self.is_open = False
        self._last_id = 0

    def _check_open(self) -> None:
        if not self.is_open:
            raise StoreClosed("MemoryStore is not open")

    @staticmethod
    def _is_due(job: Job) -> bool:
        return job.state in WAITING_STATES or job.cancel_wanted

    def _lower(self, lane: str, due_at: float) -> None:
        row = self.lanes.setdefault(lane, Lane())
        if row.next_due is None or row.next_due > due_at:
            row.next_due = due_at

    def _holds(self, lane: str, owner: str, now: float) -> bool:
        row = self.lanes.get(lane)
        return (
            row is not None and row.owner == owner and row.lease_until is not None and row.lease_until >= now
        )

    # --- the Store port -----------------------------------------------------------------------

    async def open(self) -> None:
        if self.is_open:
            raise RuntimeError("MemoryStore is already open")
        self.is_open = True

    async def close(self) -> None:
        self.is_open = False

    async def ping(self) -> None:
        self._check_open()
        if self.ping_error is not None:
            raise self.ping_error

    async def accept_many(
        self, accepts: Sequence[tuple[DeliveryRecord, Sequence[NewJob]]]
    ) -> list[Accepted | Exception | None]:
        return await each_outcome(self.accept(delivery, jobs) for delivery, jobs in accepts)

    async def accept(self, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
        self._check_open()
        key = (delivery.hook_id, delivery.delivery_id)
        if key in self.deliveries:
            return None
        replaced: list[int] = []
        self.deliveries[key] = delivery
        received_at = float(delivery.received_at)
        for new in jobs:
            self._last_id += 1
            self.jobs[self._last_id] = Job(
                id=self._last_id,
                delivery_id=delivery.delivery_id,
                lane=new.lane,
                route=new.route,
                source_key=new.source_key,
                source_id=new.source_id,
                source_spec=new.source_spec,
                repository=new.repository,
                repository_id=new.repository_id,
                branch=new.branch,
                before=new.before,
                after=new.after,
                pushed_at=new.pushed_at,
                collection=new.collection,
                state=JobState.QUEUED,
                attempts=0,
                received_at=received_at,
                due_at=float(new.due_at),
                first_attempt_at=None,
                invocation_id=None,
                invocation_status=None,
                poll_at=None,
                cancel_wanted=False,
                error=None,
                updated_at=received_at,
            )
            self._lower(new.lane, float(new.due_at))
            if self.lanes[new.lane].owner is None:
                lane = [job for job in self.jobs.values() if job.lane == new.lane]
                for job_id in superseded_on_arrival(self.jobs[self._last_id], lane):
                    replaced.append(job_id)
                    self.jobs[job_id] = dataclasses.replace(
                        self.jobs[job_id],
                        state=JobState.SUPERSEDED,
                        error="superseded by a newer push",
                        updated_at=received_at,
                    )
        return Accepted(tuple(sorted(replaced)))

    async def claim_lane(self, *, owner: str, now: float, lease: float) -> str | None:
        self._check_open()
        claimable = [
            (row.next_due, name)
            for name, row in self.lanes.items()
            if row.next_due is not None
            and row.next_due <= now
            and (row.owner is None or (row.lease_until is not None and row.lease_until < now))
            and (row.hold_until is None or row.hold_until <= now)
        ]
        if not claimable:
            return None
        _, name = min(claimable)
        self.lanes[name].owner = owner
        self.lanes[name].lease_until = float(now + lease)
        return name

    async def renew_lane(self, lane: str, *, owner: str, now: float, lease: float) -> bool:
        self._check_open()
        if not self._holds(lane, owner, now):
            return False
        self.lanes[lane].lease_until = float(now + lease)
        return True

    async def release_lane(self, lane: str, *, owner: str, hold_until: float | None = None) -> None:
        self._check_open()
        row = self.lanes.get(lane)
        if row is None or row.owner != owner:
            return
        due = [job.due_at for job in self.jobs.values() if job.lane == lane and self._is_due(job)]
        row.owner = row.lease_until = None
        row.hold_until = hold_until
        row.next_due = min(due) if due else None

    async def lane_jobs(self, lane: str, *, history: int) -> list[Job]:
        self._check_open()
        if history < 0:
            raise ValueError(f"history must not be negative, got {history}")
        mine = sorted((job for job in self.jobs.values() if job.lane == lane), key=lambda job: job.id)
        live = [job for job in mine if job.state in _LIVE_STATES or job.cancel_wanted]
        others = [job for job in mine if not (job.state in _LIVE_STATES or job.cancel_wanted)]
        recent = others[len(others) - history :] if history else []
        return sorted(live + recent, key=lambda job: job.id)

    async def lane_snapshot(self, lane: str, *, history: int) -> LaneSnapshot:
        jobs = await self.lane_jobs(lane, history=history)
        live = [job for job in jobs if job.state in _LIVE_STATES or job.cancel_wanted]
        links = [
            Link(job.id, job.before, job.after, job.pushed_at)
            for job in jobs
            if not (job.state in _LIVE_STATES or job.cancel_wanted)
        ]
        return LaneSnapshot(live, links)

    async def apply(
        self,
        updates: Sequence[JobUpdate],
        *,
        now: float,
        owner: str | None = None,
        lease: float | None = None,
    ) -> bool:
        self._check_open()
        check_apply(updates, owner=owner, lease=lease)
        lanes = {self.jobs[u.job_id].lane for u in updates if u.job_id in self.jobs}
        if owner is not None and not all(self._holds(lane, owner, now) for lane in lanes):
            return False
        if lease is not None:
            for lane in lanes:
                self.lanes[lane].lease_until = float(now + lease)
        for update in updates:
            job = self.jobs.get(update.job_id)
            if job is None:
                continue
            fields: dict[str, Any] = dict(update.fields)
            if "state" in fields:
                fields["state"] = JobState(fields["state"])
            if fields.get("invocation_status") is not None:
                fields["invocation_status"] = InvocationStatus(fields["invocation_status"])
            for name in ("due_at", "first_attempt_at", "poll_at"):
                if fields.get(name) is not None:
                    fields[name] = float(fields[name])
            job = dataclasses.replace(job, **fields, updated_at=float(now))
            self.jobs[job.id] = job
            if self._is_due(job):
                self._lower(job.lane, job.due_at)
        return True

    async def due_polls(self, *, now: float, limit: int) -> list[Job]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        due = [
            job
            for job in self.jobs.values()
            if job.state is JobState.ACTIVE and job.poll_at is not None and job.poll_at <= now
        ]
        return sorted(due, key=lambda job: (job.poll_at, job.id))[:limit]

    async def get_job(self, job_id: int) -> Job | None:
        self._check_open()
        return self.jobs.get(job_id)

    async def list_jobs(
        self, *, states: Collection[JobState] | None = None, lane: str | None = None, limit: int = 100
    ) -> list[Job]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        wanted = None if states is None else {JobState(state) for state in states}
        found = [
            job
            for job in self.jobs.values()
            if (wanted is None or job.state in wanted) and (lane is None or job.lane == lane)
        ]
        return sorted(found, key=lambda job: -job.id)[:limit]

    async def requeue(self, job_ids: Collection[int], *, now: float) -> int:
        self._check_open()
        count = 0
        for job_id in set(job_ids):
            job = self.jobs.get(job_id)
            if job is None or job.state not in (JobState.FAILED, JobState.DEAD):
                continue
            self.jobs[job_id] = dataclasses.replace(
                job,
                state=JobState.QUEUED,
                due_at=float(now),
                attempts=0,
                first_attempt_at=None,
                error=None,
                updated_at=float(now),
            )
            self._lower(job.lane, float(now))
            count += 1
        return count

    async def counts(self) -> Mapping[str, int]:
        self._check_open()
        result = {state.value: 0 for state in JobState}
        for job in self.jobs.values():
            result[job.state.value] += 1
        return result

    async def get_source(self, key: str) -> str | None:
        self._check_open()
        return self.sources.get(key)

    async def put_source(self, key: str, source_id: str) -> None:
        self._check_open()
        self.sources.setdefault(key, source_id)

    async def prune(
        self, *, deliveries_before: float, jobs_before: float, limit: int | None = None
    ) -> tuple[int, int]:
        self._check_open()
        old_deliveries = sorted(
            (key for key, d in self.deliveries.items() if d.received_at < deliveries_before),
            key=lambda key: self.deliveries[key].received_at,
        )[:limit]
        for key in old_deliveries:
            del self.deliveries[key]
        old_jobs = sorted(
            (
                job.id
                for job in self.jobs.values()
                if job.state in _FINISHED_STATES and job.updated_at < jobs_before
            ),
            key=lambda job_id: self.jobs[job_id].updated_at,
        )[:limit]
        for job_id in old_jobs:
            del self.jobs[job_id]
        if limit is None or (len(old_deliveries) < limit and len(old_jobs) < limit):
            used = {job.lane for job in self.jobs.values()}
            for name in [name for name, row in self.lanes.items() if row.owner is None and name not in used]:
                del self.lanes[name]
        return len(old_deliveries), len(old_jobs)
