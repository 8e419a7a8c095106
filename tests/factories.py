"""Builders for domain values in tests (one place, so no test file grows its own copy)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bridge.core.jobs import InvocationStatus, Job, JobState, NewJob
from bridge.samples import fake_sha


def sha(n: int | str) -> str:
    """Commit id number ``n`` (``sha(0)`` is not the zero sha)."""
    return fake_sha(f"commit-{n}")


def make_job(job_id: int, *, before: int | str, after: int | str, **changes: Any) -> Job:
    """A queued job in lane ``L`` pushing commit ``after`` on top of ``before``."""
    accepted = new_job(after=after, before=before)
    job = Job(
        id=job_id,
        delivery_id=f"d-{job_id}",
        **accepted._asdict(),
        state=JobState.QUEUED,
        attempts=0,
        received_at=0.0,
        first_attempt_at=None,
        invocation_id=None,
        invocation_status=None,
        poll_at=None,
        cancel_wanted=False,
        error=None,
        updated_at=0.0,
    )
    return replace(job, **changes)


def active(job: Job, invocation: str, status: InvocationStatus = InvocationStatus.PENDING) -> Job:
    return replace(job, state=JobState.ACTIVE, invocation_id=invocation, invocation_status=status)


def new_job(
    *, lane: str = "L", after: int | str = 1, before: int | str = 0, due_at: float = 0.0, **changes: Any
) -> NewJob:
    job = NewJob(
        lane=lane,
        route="r1",
        source_key="id:s1",
        source_id="s1",
        source_spec=None,
        repository="acme/api",
        repository_id=1,
        branch="main",
        before=sha(before),
        after=sha(after),
        pushed_at=None,
        collection=f"acme-api-main-{sha(after)[:12]}",
        due_at=due_at,
    )
    return job._replace(**changes)
