"""What the SQLite and PostgreSQL stores share: every Store method, over one ``_transact``.

A subclass provides ``open``, ``close`` and ``_transact(body)``, which runs a body of
:mod:`bridge.store.transactions` in one transaction off the event loop and returns its result once
committed. Arguments are checked here, before anything reaches the database.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from bridge.core.jobs import DeliveryRecord, Job, JobState, NewJob
from bridge.store import transactions as t
from bridge.store.base import Accepted, JobUpdate, LaneSnapshot, check_apply, each_outcome
from bridge.store.transactions import Tx

T = TypeVar("T")


def check_count(name: str, value: int) -> None:
    """Raise ``ValueError`` for a negative ``limit`` or ``history``."""
    if value < 0:
        raise ValueError(f"{name} must not be negative, got {value}")


class SqlStore(ABC):
    """The Store port over transaction bodies; subclasses say where and how a body runs."""

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _transact(self, body: Callable[[Tx], T]) -> T:
        """Run ``body`` in one transaction; its result once the transaction committed."""

    async def ping(self) -> None:
        await self._transact(t.ping)

    async def accept(self, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
        frozen = tuple(jobs)
        return await self._transact(lambda tx: t.accept(tx, delivery, frozen))

    async def accept_many(
        self, accepts: Sequence[tuple[DeliveryRecord, Sequence[NewJob]]]
    ) -> list[Accepted | Exception | None]:
        """``accept`` of each of ``accepts``, one after another; each one's result, or its error."""
        return await each_outcome(self.accept(delivery, jobs) for delivery, jobs in accepts)

    async def claim_lane(self, *, owner: str, now: float, lease: float) -> str | None:
        return await self._transact(lambda tx: t.claim_lane(tx, owner=owner, now=now, lease=lease))

    async def renew_lane(self, lane: str, *, owner: str, now: float, lease: float) -> bool:
        return await self._transact(lambda tx: t.renew_lane(tx, lane, owner=owner, now=now, lease=lease))

    async def release_lane(self, lane: str, *, owner: str, hold_until: float | None = None) -> None:
        await self._transact(lambda tx: t.release_lane(tx, lane, owner=owner, hold_until=hold_until))

    async def lane_jobs(self, lane: str, *, history: int) -> list[Job]:
        check_count("history", history)
        return await self._transact(lambda tx: t.lane_jobs(tx, lane, history=history))

    async def lane_snapshot(self, lane: str, *, history: int) -> LaneSnapshot:
        check_count("history", history)
        return await self._transact(lambda tx: t.lane_snapshot(tx, lane, history=history))

    async def apply(
        self,
        updates: Sequence[JobUpdate],
        *,
        now: float,
        owner: str | None = None,
        lease: float | None = None,
    ) -> bool:
        frozen = tuple(updates)
        check_apply(frozen, owner=owner, lease=lease)
        return await self._transact(self._apply_body(frozen, now=float(now), owner=owner, lease=lease))

    def _apply_body(
        self, updates: tuple[JobUpdate, ...], *, now: float, owner: str | None, lease: float | None
    ) -> Callable[[Tx], bool]:
        """The transaction of a checked ``apply`` (a store may run some updates its own way)."""
        return lambda tx: t.apply(tx, updates, now=now, owner=owner, lease=lease)

    async def due_polls(self, *, now: float, limit: int) -> list[Job]:
        check_count("limit", limit)
        return await self._transact(lambda tx: t.due_polls(tx, now=now, limit=limit))

    async def get_job(self, job_id: int) -> Job | None:
        return await self._transact(lambda tx: t.get_job(tx, job_id))

    async def list_jobs(
        self, *, states: Collection[JobState] | None = None, lane: str | None = None, limit: int = 100
    ) -> list[Job]:
        check_count("limit", limit)
        wanted = None if states is None else frozenset(JobState(state) for state in states)
        return await self._transact(lambda tx: t.list_jobs(tx, states=wanted, lane=lane, limit=limit))

    async def requeue(self, job_ids: Collection[int], *, now: float) -> int:
        ids = frozenset(job_ids)
        return await self._transact(lambda tx: t.requeue(tx, ids, now=now))

    async def counts(self) -> Mapping[str, int]:
        return await self._transact(t.counts)

    async def get_source(self, key: str) -> str | None:
        return await self._transact(lambda tx: t.get_source(tx, key))

    async def put_source(self, key: str, source_id: str) -> None:
        await self._transact(lambda tx: t.put_source(tx, key, source_id))

    async def prune(
        self, *, deliveries_before: float, jobs_before: float, limit: int | None = None
    ) -> tuple[int, int]:
        return await self._transact(
            lambda tx: t.prune(tx, deliveries_before=deliveries_before, jobs_before=jobs_before, limit=limit)
        )
