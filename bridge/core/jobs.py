"""Jobs: one intended Chroma Sync invocation for one route and one push.

A job lives in a *lane*: one source (or described source) and one branch of one route. The worker
serialises work per lane, which is where "newest wins" is decided.

```
            accept                 claim lane: newest due job                 create 2xx
 delivery ─────────▶ queued ─────────────────────────────▶ creating ───────────────────▶ active
                       │  ▲  retryable error (backoff)        │   │ 409: already indexed       │
                       │  └───────────────────────────────────┘   ▼                            │ terminal
                       │ a newer push in the lane                done ◀────────────────────────┘ status
                       ▼                                          ▲
                   superseded        400/404/horizon: failed/dead ┘ (an operator may requeue)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class JobState(StrEnum):
    QUEUED = "queued"  # waiting for its due time
    CREATING = "creating"  # intent recorded: a create call may have reached Sync
    ACTIVE = "active"  # an invocation exists and has not ended
    DONE = "done"  # the invocation ended (complete, failed or cancelled) or the commit was indexed
    SUPERSEDED = "superseded"  # a newer push to the lane replaced it before any Sync call
    FAILED = "failed"  # permanent Sync error (400/404); never retried on its own
    DEAD = "dead"  # retryable errors until the retry horizon passed


WAITING_STATES = frozenset({JobState.QUEUED, JobState.CREATING})
REQUEUABLE_STATES = frozenset({JobState.FAILED, JobState.DEAD})


class InvocationStatus(StrEnum):
    """Status of a Chroma Sync invocation, as the bridge records it."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ALREADY_INDEXED = "already_indexed"  # create answered 409: the collection holds finished data

    @property
    def terminal(self) -> bool:
        return self not in (InvocationStatus.PENDING, InvocationStatus.PROCESSING)


class DeliveryRecord(NamedTuple):
    """One accepted delivery; (hook_id, delivery_id) is unique and makes redeliveries no-ops.

    A ``NamedTuple``, as is :class:`NewJob`, not a frozen dataclass: both are made for every delivery,
    in the ingress and again in the worker process, and a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__`` (1.29 us for a ``NewJob`` against 0.29 us; ``bench/HISTORY.md``,
    nineteenth round). Immutable and typed all the same."""

    hook_id: str
    delivery_id: str
    event: str
    repository: str
    ref: str
    after: str
    received_at: float


class NewJob(NamedTuple):
    """A job as the ingress creates it; everything the worker needs is decided here."""

    lane: str
    route: str
    source_key: str
    source_id: str | None
    source_spec: str | None  # JSON of a described source, when the route names none
    repository: str
    repository_id: int
    branch: str
    before: str
    after: str
    pushed_at: int | None
    collection: str
    due_at: float


@dataclass(frozen=True, slots=True)
class Job:
    """A stored job."""

    id: int
    delivery_id: str
    lane: str
    route: str
    source_key: str
    source_id: str | None
    source_spec: str | None
    repository: str
    repository_id: int
    branch: str
    before: str
    after: str
    pushed_at: int | None
    collection: str
    state: JobState
    attempts: int
    received_at: float
    due_at: float
    first_attempt_at: float | None
    invocation_id: str | None
    invocation_status: InvocationStatus | None
    poll_at: float | None
    cancel_wanted: bool
    error: str | None
    updated_at: float
