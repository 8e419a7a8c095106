"""The store port: what the ingress, the worker and the admin commands need from durable state.

Three implementations pass one contract suite (``tests/store/test_contract.py``): an in-memory fake
(``tests/fakes.py``), SQLite (embedded, one replica, group commit) and PostgreSQL (several replicas).

Times are POSIX seconds (``float``) passed in by the caller; a store never reads the clock.

Lanes. A lane is one route's source and branch. ``claim_lane`` leases the lane whose earliest due job
is due, so at most one worker (in any replica) decides and creates for a lane at a time; the lease
expires by itself when its holder dies. ``apply`` with an ``owner`` is fenced: it changes nothing and
returns ``False`` once the caller no longer holds the lane.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, TypeVar

from bridge.core.jobs import DeliveryRecord, InvocationStatus, Job, JobState, NewJob
from bridge.core.supersede import Link

FieldValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery ``accept`` stored (always true; a redelivery gives ``None`` instead).

    ``superseded``: ids of the queued jobs its pushes replaced as they were stored
    (``bridge.core.supersede.superseded_on_arrival``).
    """

    superseded: tuple[int, ...] = ()


class LaneSnapshot(NamedTuple):
    """What the worker reads of a lane to plan it (``bridge.core.supersede.plan_lane``)."""

    jobs: list[Job]  # live (queued, creating, active) or cancel_wanted, whole; by id
    history: list[Link]  # the most recent others (finished), only their place in the chain; by id


#: Job columns ``apply`` may change; anything else is a programming error.
UPDATABLE_FIELDS = frozenset(
    {
        "state",
        "attempts",
        "due_at",
        "first_attempt_at",
        "invocation_id",
        "invocation_status",
        "poll_at",
        "cancel_wanted",
        "error",
        "source_id",
    }
)


class StoreClosed(RuntimeError):
    """The store is not open (``open()`` not called yet, or ``close()`` called)."""


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """Set ``fields`` (names from ``UPDATABLE_FIELDS``) on job ``job_id``; ``updated_at`` is set too."""

    job_id: int
    fields: Mapping[str, FieldValue]


_NUMBER_FIELDS = frozenset({"due_at", "first_attempt_at", "poll_at"})
_TEXT_FIELDS = frozenset({"invocation_id", "error", "source_id"})
_REQUIRED_FIELDS = frozenset({"state", "attempts", "due_at", "cancel_wanted"})


def check_apply(updates: Sequence[JobUpdate], *, owner: str | None, lease: float | None) -> None:
    """Raise ``ValueError`` for an ``apply`` call no store may run: a bad update (``check_update``), or
    leases to renew without saying whose. Every store calls this before it touches its data."""
    for update in updates:
        check_update(update)
    if lease is not None and owner is None:
        raise ValueError("apply(lease=...) renews the owner's leases: it needs owner")
    if lease is not None and not lease > 0:
        raise ValueError(f"lease must be positive, not {lease!r}")


def check_update(update: JobUpdate) -> None:
    """Raise ``ValueError`` unless ``update`` sets only ``UPDATABLE_FIELDS``, each to a value of its kind.

    Every store calls this for every update before it touches its data, so a bad update changes nothing.
    """
    for name, value in update.fields.items():
        if name not in UPDATABLE_FIELDS:
            raise ValueError(f"job field {name!r} cannot be updated (job {update.job_id})")
        if value is None:
            if name in _REQUIRED_FIELDS:
                raise ValueError(f"job field {name!r} cannot be None (job {update.job_id})")
            continue
        if name == "state":
            ok = isinstance(value, str) and value in JobState._value2member_map_
        elif name == "invocation_status":
            ok = isinstance(value, str) and value in InvocationStatus._value2member_map_
        elif name == "attempts":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif name == "cancel_wanted":
            ok = isinstance(value, bool)
        elif name in _NUMBER_FIELDS:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = name in _TEXT_FIELDS and isinstance(value, str)
        if not ok:
            raise ValueError(f"job field {name!r} cannot be set to {value!r} (job {update.job_id})")


T = TypeVar("T")


async def each_outcome(calls: Iterable[Awaitable[T]]) -> list[T | Exception]:
    """Await each of ``calls`` in turn; its result, or the exception it raised (``accept_many``: one
    accept's error is its own answer, not its neighbours')."""
    outcomes: list[T | Exception] = []
    for call in calls:
        try:
            outcomes.append(await call)
        except Exception as error:  # the error is the outcome
            outcomes.append(error)
    return outcomes


def future_outcome(future: asyncio.Future[T]) -> T | BaseException:
    """A settled future's result, or its exception (a cancelled one: ``StoreClosed``)."""
    if future.cancelled():
        return StoreClosed("the request was cancelled")
    error = future.exception()
    return future.result() if error is None else error


class IngressStore(Protocol):
    """What the webhook and the health endpoints need of the store (in the worker's own process, the
    ingress reaches the SQLite store through ``bridge.worker_process.RemoteStore``)."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations (safe when several replicas start at once)."""

    async def close(self) -> None:
        """Finish pending writes and release connections."""

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    async def accept(self, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
        """Commit the delivery and its jobs in one transaction.

        Returns ``None`` (and stores nothing) when (hook_id, delivery_id) is already stored. In the same
        transaction, each new job replaces the queued jobs of its lane it directly follows, unless a
        worker holds the lane (``core.supersede.superseded_on_arrival``); the result names them.
        When this returns, the delivery is durable.
        """

    async def counts(self) -> Mapping[str, int]:
        """Number of jobs per state (every ``JobState`` present, zero included)."""


class Store(IngressStore, Protocol):
    """Durable state of the bridge."""

    async def accept_many(
        self, accepts: Sequence[tuple[DeliveryRecord, Sequence[NewJob]]]
    ) -> list[Accepted | Exception | None]:
        """``accept`` of each of ``accepts`` (each its own transaction, or a share of one group commit);
        each one's result, or the error it raised."""

    async def claim_lane(self, *, owner: str, now: float, lease: float) -> str | None:
        """Lease the lane with the earliest due work (due_at <= now) that no live lease holds."""

    async def renew_lane(self, lane: str, *, owner: str, now: float, lease: float) -> bool:
        """Extend the caller's lease; ``False`` when the caller no longer holds it."""

    async def release_lane(self, lane: str, *, owner: str, hold_until: float | None = None) -> None:
        """Drop the caller's lease and recompute the lane's next due time from its jobs.

        With ``hold_until``, no claim takes the lane before that time (the minimum gap between two
        creates in a lane); without, any hold is lifted.
        """

    async def lane_jobs(self, lane: str, *, history: int) -> list[Job]:
        """The lane's waiting jobs (queued, creating), its jobs with ``cancel_wanted``, its active jobs,
        and the ``history`` most recent other jobs; ordered by id."""

    async def lane_snapshot(self, lane: str, *, history: int) -> LaneSnapshot:
        """The jobs of :meth:`lane_jobs`, split: the live and ``cancel_wanted`` ones whole, and the
        ``history`` most recent others as :class:`~bridge.core.supersede.Link` (read in one transaction)."""

    async def apply(
        self,
        updates: Sequence[JobUpdate],
        *,
        now: float,
        owner: str | None = None,
        lease: float | None = None,
    ) -> bool:
        """Apply ``updates`` in one transaction.

        With ``owner``, every updated job's lane must be leased by ``owner``, else nothing changes and
        the result is ``False``. With ``lease`` too, those leases are renewed to ``now + lease`` in the
        same transaction (what :meth:`renew_lane` does, without a round trip of its own); ``lease``
        without ``owner`` is a ``ValueError``.
        """

    async def due_polls(self, *, now: float, limit: int) -> list[Job]:
        """Active jobs whose ``poll_at`` has come, earliest first."""

    async def get_job(self, job_id: int) -> Job | None: ...

    async def list_jobs(
        self, *, states: Collection[JobState] | None = None, lane: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs, newest first, optionally filtered."""

    async def requeue(self, job_ids: Collection[int], *, now: float) -> int:
        """Put failed or dead jobs back in the queue, due now, with a fresh retry budget."""

    async def get_source(self, key: str) -> str | None:
        """The Chroma Sync source id remembered for a described source key."""

    async def put_source(self, key: str, source_id: str) -> None:
        """Remember a described source's id (first writer wins)."""

    async def prune(
        self, *, deliveries_before: float, jobs_before: float, limit: int | None = None
    ) -> tuple[int, int]:
        """Delete deliveries received before ``deliveries_before`` and finished jobs (done,
        superseded) last updated before ``jobs_before``, in one transaction; with ``limit``, only the
        oldest ``limit`` of each (call again until fewer come back). Returns (deliveries, jobs) deleted."""
