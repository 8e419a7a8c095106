"""The store's transaction bodies, written once for SQLite and PostgreSQL.

Each body is a plain function over :class:`Tx`, a tiny wrapper of one DB-API cursor that runs named
statements from ``queries.sql``. The SQLite store runs bodies on its writer thread (each inside a
savepoint of a group commit); the PostgreSQL store runs them in a pool thread, one transaction each,
and runs a body again when PostgreSQL aborted it for a deadlock. A body therefore does nothing but
database work, and returns plain values.

Lock order (it matters on PostgreSQL): a transaction that changes jobs first locks their lanes, in
lane-name order (``lock_lane``), then the jobs; ``accept`` creates or lowers its lanes in lane-name
order before it inserts jobs. So two transactions never wait for each other in a cycle.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple, Protocol

from bridge.core.jobs import WAITING_STATES, DeliveryRecord, InvocationStatus, Job, JobState, NewJob
from bridge.core.supersede import Link
from bridge.store.base import UPDATABLE_FIELDS, Accepted, JobUpdate, LaneSnapshot

Row = dict[str, Any]


class DbCursor(Protocol):
    """The part of a DB-API cursor the bodies use (``sqlite3.Cursor`` and ``psycopg.Cursor`` fit)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def execute(self, sql: str, params: Mapping[str, Any], /) -> object: ...

    def fetchall(self) -> list[Any]: ...


class Tx:
    """One open transaction: runs named statements with keyword parameters."""

    def __init__(self, cursor: DbCursor, queries: Mapping[str, str]) -> None:
        self.cursor = cursor
        self._queries = queries

    def run(self, name: str, **params: Any) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        self.cursor.execute(self._queries[name], params)
        return self.cursor.rowcount

    def rows(self, name: str, **params: Any) -> list[Row]:
        """Run a statement and return its rows as dicts."""
        self.cursor.execute(self._queries[name], params)
        columns = [column[0] for column in self.cursor.description]
        return [dict(zip(columns, values, strict=True)) for values in self.cursor.fetchall()]

    def tuples(self, name: str, **params: Any) -> list[Any]:
        """Run a statement and return its rows as the driver gives them (positional tuples)."""
        self.cursor.execute(self._queries[name], params)
        return self.cursor.fetchall()

    def jobs(self, name: str, **params: Any) -> list[Job]:
        """Run a statement over ``jobs`` and return its rows as :class:`Job` objects.

        The lane reads are the worker's hottest statements; mapping rows by position instead of
        through a dict per row halved their Python cost (``bench/HISTORY.md``)."""
        self.cursor.execute(self._queries[name], params)
        pick = _job_picker(tuple(column[0] for column in self.cursor.description))
        return [_job(*pick(values)) for values in self.cursor.fetchall()]

    def row(self, name: str, **params: Any) -> Row | None:
        """Run a statement and return its first row, if any."""
        rows = self.rows(name, **params)
        return rows[0] if rows else None


_JOB_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(Job))


def _job(
    id: Any, delivery_id: Any, lane: Any, route: Any, source_key: Any, source_id: Any, source_spec: Any,
    repository: Any, repository_id: Any, branch: Any, before: Any, after: Any, pushed_at: Any,
    collection: Any, state: Any, attempts: Any, received_at: Any, due_at: Any, first_attempt_at: Any,
    invocation_id: Any, invocation_status: Any, poll_at: Any, cancel_wanted: Any, error: Any,
    updated_at: Any,
) -> Job:  # fmt: skip
    """A :class:`Job` from its column values in field order (enums, booleans and floats restored)."""
    return Job(
        id=int(id),
        delivery_id=delivery_id,
        lane=lane,
        route=route,
        source_key=source_key,
        source_id=source_id,
        source_spec=source_spec,
        repository=repository,
        repository_id=int(repository_id),
        branch=branch,
        before=before,
        after=after,
        pushed_at=None if pushed_at is None else int(pushed_at),
        collection=collection,
        state=JobState(state),
        attempts=int(attempts),
        received_at=float(received_at),
        due_at=float(due_at),
        first_attempt_at=_optional_float(first_attempt_at),
        invocation_id=invocation_id,
        invocation_status=None if invocation_status is None else InvocationStatus(invocation_status),
        poll_at=_optional_float(poll_at),
        cancel_wanted=bool(cancel_wanted),
        error=error,
        updated_at=float(updated_at),
    )


def row_to_job(row: Row) -> Job:
    """Map a ``jobs`` row to a :class:`Job`."""
    return _job(*(row[name] for name in _JOB_COLUMNS))


@functools.lru_cache(maxsize=32)
def _job_picker(columns: tuple[str, ...]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Picks a result row's values in :class:`Job` field order (by position: no dict per row)."""
    return operator.itemgetter(*(columns.index(name) for name in _JOB_COLUMNS))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _plain(value: Any) -> Any:
    """Enums as their values: drivers must never see an enum's name."""
    return value.value if isinstance(value, Enum) else value


def _is_due(row: Row) -> bool:
    return row["state"] in WAITING_STATES or bool(row["cancel_wanted"])


def _lock_lanes_of(tx: Tx, job_ids: Iterable[int]) -> dict[str, Row | None]:
    """Lock the lanes of ``job_ids`` in lane order; each lane's lease row (jobs that do not exist
    are skipped)."""
    lanes: set[str] = set()
    for job_id in sorted(set(job_ids)):
        row = tx.row("job_lane", job_id=job_id)
        if row is not None:
            lanes.add(row["lane"])
    return {lane: tx.row("lock_lane", lane=lane) for lane in sorted(lanes)}


def _holds(lease: Row | None, *, owner: str, now: float) -> bool:
    return (
        lease is not None
        and lease["owner"] == owner
        and lease["lease_until"] is not None
        and lease["lease_until"] >= now
    )


# --- bodies, one per Store method --------------------------------------------------------------


def ping(tx: Tx) -> None:
    tx.rows("ping")


def accept(tx: Tx, delivery: DeliveryRecord, jobs: Sequence[NewJob]) -> Accepted | None:
    received_at = float(delivery.received_at)
    inserted = tx.run(
        "insert_delivery",
        hook_id=delivery.hook_id,
        delivery_id=delivery.delivery_id,
        event=delivery.event,
        repository=delivery.repository,
        ref=delivery.ref,
        after=delivery.after,
        received_at=received_at,
    )
    if inserted == 0:
        return None
    earliest: dict[str, float] = {}
    for job in jobs:
        earliest[job.lane] = min(earliest.get(job.lane, math.inf), float(job.due_at))
    for lane in sorted(earliest):
        tx.run("lower_lane", lane=lane, due_at=earliest[lane])
    ids = [
        int(
            tx.tuples(
                "insert_job",
                delivery_id=delivery.delivery_id,
                lane=job.lane,
                route=job.route,
                source_key=job.source_key,
                source_id=job.source_id,
                source_spec=job.source_spec,
                repository=job.repository,
                repository_id=job.repository_id,
                branch=job.branch,
                before=job.before,
                after=job.after,
                pushed_at=job.pushed_at,
                collection=job.collection,
                received_at=received_at,
                due_at=float(job.due_at),
            )[0][0]
        )
        for job in jobs
    ]
    if not ids:
        return Accepted()
    replaced = supersede_on_arrival(tx, first=min(ids), last=max(ids), delivery_id=delivery.delivery_id)
    return Accepted(tuple(sorted(job.id for job in replaced)))


class Replaced(NamedTuple):
    """A queued job that a push replaced on arrival (``supersede_on_arrival``): its lane and its place
    in the chain (a ``core.supersede.Linked``)."""

    id: int
    lane: str
    before: str
    after: str
    pushed_at: int | None


def supersede_on_arrival(tx: Tx, *, first: int, last: int, delivery_id: str | None) -> list[Replaced]:
    """Run the arrival rule for the jobs stored with ids ``first`` to ``last`` (of ``delivery_id``, if
    given); the queued jobs it replaced."""
    return [
        Replaced(int(job_id), lane, before, after, None if pushed_at is None else int(pushed_at))
        for job_id, lane, before, after, pushed_at in tx.tuples(
            "supersede_on_arrival", first=first, last=last, delivery_id=delivery_id
        )
    ]


def claim_lane(tx: Tx, *, owner: str, now: float, lease: float) -> str | None:
    row = tx.row("claim_lane", owner=owner, now=float(now), lease_until=float(now + lease))
    return None if row is None else str(row["lane"])


def renew_lane(tx: Tx, lane: str, *, owner: str, now: float, lease: float) -> bool:
    return tx.run("renew_lane", lane=lane, owner=owner, now=float(now), lease_until=float(now + lease)) > 0


def renew_lanes(tx: Tx, lanes: Iterable[str], *, owner: str, now: float, lease: float) -> None:
    """Renew ``owner``'s leases of ``lanes`` (all held by ``owner``, checked by the caller), in order:
    the renewal an ``apply(..., lease=...)`` makes in its own transaction."""
    for lane in lanes:
        renew_lane(tx, lane, owner=owner, now=now, lease=lease)


def release_lane(tx: Tx, lane: str, *, owner: str, hold_until: float | None = None) -> None:
    """Give the lane up; its next due time is computed from its jobs.

    The lane's row is locked first, in a statement of its own. In PostgreSQL another replica's accept
    into the lane may hold that lock (``lower_lane``) until it commits, and a statement that waits for
    a lock still reads the jobs as its snapshot had them when it began (READ COMMITTED): a
    ``release_lane`` that waited missed the accept's new job and stored a next due time of NULL, so no
    worker claimed the lane again and that push was never created (twenty-second round;
    ``tests/store/test_postgres.py``). The statement after the lock reads the jobs afresh."""
    tx.rows("lock_lane", lane=lane)
    tx.run(
        "release_lane", lane=lane, owner=owner, hold_until=None if hold_until is None else float(hold_until)
    )


def release_all_leases(tx: Tx) -> int:
    return tx.run("release_all_leases")


def lane_jobs(tx: Tx, lane: str, *, history: int) -> list[Job]:
    """:func:`lane_snapshot`'s two reads, the history's jobs read whole, in id order. The worker reads
    the snapshot; this inspection read takes one primary-key read per history job so that a lane's
    history is written once per dialect (``lane_history``)."""
    jobs = tx.jobs("lane_live", lane=lane)
    for id_, *_ in tx.tuples("lane_history", lane=lane, history=history):
        jobs += tx.jobs("get_job", job_id=id_)
    return sorted(jobs, key=lambda job: job.id)


def lane_snapshot(tx: Tx, lane: str, *, history: int) -> LaneSnapshot:
    jobs = tx.jobs("lane_live", lane=lane)
    links = [
        Link(int(id_), before, after, None if pushed_at is None else int(pushed_at))
        for id_, before, after, pushed_at in tx.tuples("lane_history", lane=lane, history=history)
    ]
    return LaneSnapshot(jobs, links)


def _update_params(update: JobUpdate, now: float) -> dict[str, Any]:
    params: dict[str, Any] = {"job_id": update.job_id, "now": float(now)}
    for name in UPDATABLE_FIELDS:
        params[f"set_{name}"] = name in update.fields
        params[name] = _plain(update.fields.get(name))
    return params


def apply(
    tx: Tx, updates: Sequence[JobUpdate], *, now: float, owner: str | None, lease: float | None = None
) -> bool:
    """The caller has checked every update and ``lease`` (``base.check_apply``)."""
    leases = _lock_lanes_of(tx, (update.job_id for update in updates))
    if owner is not None and not all(_holds(row, owner=owner, now=now) for row in leases.values()):
        return False
    if owner is not None and lease is not None:
        renew_lanes(tx, leases, owner=owner, now=now, lease=lease)  # sorted, each held (checked above)
    # Stable sort: each job's updates keep their order, and job rows are locked in id order.
    for update in sorted(updates, key=lambda update: update.job_id):
        row = tx.row("update_job", **_update_params(update, now))
        if row is not None and _is_due(row):
            tx.run("lower_lane", lane=row["lane"], due_at=float(row["due_at"]))
    return True


def due_polls(tx: Tx, *, now: float, limit: int) -> list[Job]:
    return tx.jobs("due_polls", now=float(now), limit=limit)


def get_job(tx: Tx, job_id: int) -> Job | None:
    row = tx.row("get_job", job_id=job_id)
    return None if row is None else row_to_job(row)


def list_jobs(tx: Tx, *, states: Collection[JobState] | None, lane: str | None, limit: int) -> list[Job]:
    wanted = sorted({JobState(state).value for state in states or ()})
    params: dict[str, Any] = {"any_state": states is None, "lane": lane, "limit": limit}
    for index in range(len(JobState)):
        params[f"state{index}"] = wanted[index] if index < len(wanted) else None
    return tx.jobs("list_jobs", **params)


def requeue(tx: Tx, job_ids: Collection[int], *, now: float) -> int:
    _lock_lanes_of(tx, job_ids)
    count = 0
    for job_id in sorted(set(job_ids)):
        row = tx.row("requeue_job", job_id=job_id, now=float(now))
        if row is not None:
            count += 1
            tx.run("lower_lane", lane=row["lane"], due_at=float(now))
    return count


def counts(tx: Tx) -> dict[str, int]:
    (row,) = tx.rows("count_jobs")  # one column per state
    return {state.value: int(row[state.value]) for state in JobState}


def get_source(tx: Tx, key: str) -> str | None:
    row = tx.row("get_source", key=key)
    return None if row is None else str(row["source_id"])


def put_source(tx: Tx, key: str, source_id: str) -> None:
    tx.run("put_source", key=key, source_id=source_id)


def prune(
    tx: Tx, *, deliveries_before: float, jobs_before: float, limit: int | None = None
) -> tuple[int, int]:
    """Delete what is past retention: all of it, or (``limit``) the oldest ``limit`` deliveries and
    ``limit`` finished jobs. Empty lanes go in the batch that finds less than ``limit`` of both: the
    last one."""
    if limit is None:
        deliveries = tx.run("prune_deliveries", before=float(deliveries_before))
        jobs = tx.run("prune_jobs", before=float(jobs_before))
    else:
        deliveries = tx.run("prune_deliveries_batch", before=float(deliveries_before), limit=limit)
        jobs = tx.run("prune_jobs_batch", before=float(jobs_before), limit=limit)
    if limit is None or (deliveries < limit and jobs < limit):
        tx.run("prune_lanes")
    return deliveries, jobs
