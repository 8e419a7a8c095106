"""Newest wins: decide, for one lane (one route's source and branch), what the worker does next.

Which push is newest? GitHub gives no reliable order: deliveries arrive late, twice, out of order.
Pushes to one branch chain instead: a push's ``before`` is the ``after`` of the push it followed
(force pushes included: ``before`` is always the ref's previous value). So push P is older than Q
when Q's chain of predecessors reaches P. Where the chain is broken (a delivery never came, or a
cycle from a branch reset back and forth), ``repository.pushed_at`` and then arrival order decide.

The plan never cancels or supersedes the newest push, so a late delivery of an old push changes
nothing but its own job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge.core.jobs import WAITING_STATES, InvocationStatus, Job, JobState


@dataclass(frozen=True, slots=True)
class LanePlan:
    """What to do in a lane now; every id is a job id of the lane."""

    create: int | None = None  # create (or, if CREATING, resume) this job's invocation
    supersede: tuple[int, ...] = ()  # queued jobs a newer push replaced: no Sync call at all
    orphans: tuple[int, ...] = ()  # replaced jobs whose create call may have happened: look up first
    duplicate: int | None = None  # the newest push is already in flight in this lane under that name
    wait_until: float | None = None  # the newest job is not due before this time
    cancel: tuple[int, ...] = ()  # superseded invocations to cancel now


def _predecessors(jobs: Sequence[Job]) -> dict[int, list[int]]:
    by_after: dict[str, list[int]] = {}
    for job in jobs:
        by_after.setdefault(job.after, []).append(job.id)
    return {job.id: [p for p in by_after.get(job.before, []) if p != job.id] for job in jobs}


def _ancestors(job_id: int, preds: dict[int, list[int]]) -> set[int]:
    seen: set[int] = set()
    stack = list(preds[job_id])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(preds[current])
    return seen


def newest(jobs: Sequence[Job]) -> Job:
    """The newest push among ``jobs`` (non-empty): a chain head, then latest ``pushed_at``, then id."""
    preds = _predecessors(jobs)
    ancestors = {job.id: _ancestors(job.id, preds) for job in jobs}
    heads = [
        job
        for job in jobs
        if not any(job.id in ancestors[other.id] and other.id not in ancestors[job.id] for other in jobs)
    ]
    return max(heads or jobs, key=lambda job: (job.pushed_at or 0, job.id))


def plan_lane(jobs: Sequence[Job], *, now: float) -> LanePlan:
    """Decide the next step for a lane from its jobs (waiting, active and recent history)."""
    if not jobs:
        return LanePlan()
    head = newest(jobs)
    older_waiting = [j for j in jobs if j.state in WAITING_STATES and j.id != head.id]
    cancel = tuple(j.id for j in jobs if j.cancel_wanted and j.due_at <= now and j.id != head.id)
    plan = LanePlan(
        supersede=tuple(j.id for j in older_waiting if j.state is JobState.QUEUED),
        orphans=tuple(j.id for j in older_waiting if j.state is JobState.CREATING),
        cancel=cancel,
    )
    if head.state not in WAITING_STATES:
        return plan
    in_flight = any(
        j.state is JobState.ACTIVE and j.collection == head.collection and j.id != head.id for j in jobs
    )
    if in_flight and head.state is JobState.QUEUED:
        return replace(plan, duplicate=head.id)
    if head.due_at > now:
        return replace(plan, wait_until=head.due_at)
    return replace(plan, create=head.id)


def to_cancel(jobs: Sequence[Job], *, created: int) -> list[int]:
    """Jobs whose invocations the newly created one supersedes: the lane's other active, pending ones."""
    return [
        j.id
        for j in jobs
        if j.id != created
        and j.state is JobState.ACTIVE
        and j.invocation_status in (None, InvocationStatus.PENDING)
        and not j.cancel_wanted
    ]
