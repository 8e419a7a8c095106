"""The Store contract: every test runs against the memory, SQLite and PostgreSQL stores alike."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from bridge.core.jobs import InvocationStatus, JobState
from bridge.core.supersede import Link
from bridge.store.base import Accepted, FieldValue, JobUpdate, Store, StoreClosed
from tests.store.builders import SHA_A, SHA_B, SHA_C, delivery, new_job
from tests.store.conftest import StoreFactory

pytestmark = pytest.mark.anyio

OWNER = "worker-a"
LIVE = {JobState.QUEUED, JobState.CREATING, JobState.ACTIVE}
OTHER = "worker-b"


async def finish(store: Store, *job_ids: int, now: float = 100.0) -> None:
    """Mark jobs done (no owner)."""
    assert await store.apply([JobUpdate(job_id, {"state": "done"}) for job_id in job_ids], now=now)


# --- accept -----------------------------------------------------------------------------------


async def test_accept_stores_the_delivery_and_queues_its_jobs(store: Store) -> None:
    """A new delivery is stored with its jobs queued, due when the ingress said, never attempted."""
    assert await store.accept(delivery(received_at=90.0), [new_job(due_at=95.0)])
    [job] = await store.list_jobs()
    assert (job.state, job.attempts, job.received_at, job.updated_at, job.due_at) == (
        JobState.QUEUED,
        0,
        90.0,
        90.0,
        95.0,
    )
    assert (job.first_attempt_at, job.invocation_id, job.invocation_status, job.poll_at, job.error) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert job.cancel_wanted is False


def follows(before: str, after: str, **changes: Any) -> dict[str, Any]:
    return {"before": before, "after": after, "collection": f"c-{after[:8]}", **changes}


async def test_a_push_replaces_the_queued_push_it_follows_on_arrival(store: Store) -> None:
    """B follows A (B.before == A.after): storing B supersedes A at once, with no worker involved."""
    assert await store.accept(delivery("d-1"), [new_job(**follows(SHA_A, SHA_B))]) is not None
    [first] = await store.list_jobs()
    accepted = await store.accept(delivery("d-2", received_at=120.0), [new_job(**follows(SHA_B, SHA_C))])
    assert accepted is not None
    assert accepted.superseded == (first.id,)
    replaced = await store.get_job(first.id)
    assert replaced is not None
    assert (replaced.state, replaced.error, replaced.updated_at) == (
        JobState.SUPERSEDED,
        "superseded by a newer push",
        120.0,
    )
    jobs, history = await store.lane_snapshot("lane-1", history=5)
    assert [job.after for job in jobs] == [SHA_C]
    assert [link.id for link in history] == [first.id]


@pytest.mark.parametrize(
    "case",
    ["held", "creating", "pushed_earlier", "not_following", "other_lane"],
)
async def test_what_a_push_does_not_replace_on_arrival(store: Store, case: str) -> None:
    """A lane a worker holds, a job being created, a push made later, a gap in the chain, another
    lane: the new push replaces nothing; the worker's plan decides."""
    await store.accept(delivery("d-1"), [new_job(**follows(SHA_A, SHA_B, pushed_at=200))])
    [first] = await store.list_jobs()
    if case == "held":
        assert await store.claim_lane(owner=OWNER, now=100.0, lease=60.0) == "lane-1"
    if case == "creating":
        assert await store.apply([JobUpdate(first.id, {"state": "creating"})], now=100.0)
    second = {
        "held": follows(SHA_B, SHA_C),
        "creating": follows(SHA_B, SHA_C),
        "pushed_earlier": follows(SHA_B, SHA_C, pushed_at=199),
        "not_following": follows(SHA_C, SHA_A),
        "other_lane": follows(SHA_B, SHA_C, lane="lane-2"),
    }[case]
    accepted = await store.accept(delivery("d-2"), [new_job(**second)])
    assert accepted is not None
    assert accepted.superseded == ()
    after = await store.get_job(first.id)
    assert after is not None
    assert after.state is (JobState.CREATING if case == "creating" else JobState.QUEUED)


async def test_a_delivery_s_own_jobs_replace_one_another_in_order(store: Store) -> None:
    """Two chained pushes in one delivery's jobs (and a third on top of what was stored)."""
    await store.accept(delivery("d-1"), [new_job(**follows("1" * 40, SHA_A))])
    accepted = await store.accept(
        delivery("d-2"),
        [new_job(**follows(SHA_A, SHA_B)), new_job(**follows(SHA_B, SHA_C))],
    )
    assert accepted is not None
    jobs = {job.after: job for job in await store.list_jobs()}
    assert accepted.superseded == tuple(sorted((jobs[SHA_A].id, jobs[SHA_B].id)))
    assert [job.state for job in (jobs[SHA_A], jobs[SHA_B], jobs[SHA_C])] == [
        JobState.SUPERSEDED,
        JobState.SUPERSEDED,
        JobState.QUEUED,
    ]


async def test_job_fields_round_trip(store: Store) -> None:
    """Every field of a new job comes back as given, with the delivery id and the right types."""
    given = new_job(source_id=None, source_spec='{"database_name": "db"}', pushed_at=None)
    await store.accept(delivery("d-9"), [given])
    [job] = await store.list_jobs()
    for name in ("lane", "route", "source_key", "source_id", "source_spec", "repository", "branch"):
        assert getattr(job, name) == getattr(given, name), name
    assert (job.repository_id, job.before, job.after, job.pushed_at, job.collection) == (
        given.repository_id,
        SHA_A,
        SHA_B,
        None,
        given.collection,
    )
    assert job.delivery_id == "d-9"
    assert isinstance(job.id, int)
    assert type(job.state) is JobState
    assert type(job.cancel_wanted) is bool


async def test_duplicate_delivery_is_refused_and_stores_nothing(store: Store) -> None:
    """A second accept of the same (hook, delivery) returns False and adds no job."""
    assert await store.accept(delivery(), [new_job()])
    assert not await store.accept(delivery(), [new_job(lane="lane-2"), new_job(lane="lane-3")])
    assert [job.lane for job in await store.list_jobs()] == ["lane-1"]


async def test_accept_many_answers_each_accept_as_accept_would(store: Store) -> None:
    """The worker process's batched accepts: a redelivery, a new push, and a push that replaces the
    one just before it in the same batch each get what accept() would have returned."""
    assert await store.accept(delivery("d-1"), [new_job(**follows(SHA_A, SHA_B))])
    [first] = await store.list_jobs()
    outcomes = await store.accept_many(
        [
            (delivery("d-1"), [new_job(**follows(SHA_A, SHA_B))]),
            (delivery("d-2"), [new_job(**follows(SHA_B, SHA_C))]),
            (delivery("d-2"), [new_job(**follows(SHA_B, SHA_C))]),  # again within the batch
        ]
    )
    assert outcomes == [None, Accepted((first.id,)), None]
    assert [job.after for job in await store.list_jobs(states=[JobState.QUEUED])] == [SHA_C]


async def test_same_delivery_id_from_another_hook_is_a_new_delivery(store: Store) -> None:
    """Deliveries are deduplicated on hook id and delivery id together."""
    assert await store.accept(delivery(hook_id="hook-1"), [new_job()])
    assert await store.accept(delivery(hook_id="hook-2"), [new_job()])
    assert len(await store.list_jobs()) == 2


async def test_delivery_without_jobs_is_still_deduplicated(store: Store) -> None:
    """A delivery that matched no route is remembered, so its redelivery is a duplicate."""
    assert await store.accept(delivery(), [])
    assert not await store.accept(delivery(), [new_job()])
    assert await store.list_jobs() == []


async def test_concurrent_accepts_of_one_delivery_store_it_once(make_store: StoreFactory) -> None:
    """Of many concurrent accepts of one delivery (two replicas), exactly one succeeds."""
    first, second = await make_store(), await make_store()
    results = await asyncio.gather(
        *(replica.accept(delivery(), [new_job(), new_job()]) for replica in [first, second] * 5)
    )
    assert sum(result is not None for result in results) == 1
    assert len(await first.list_jobs()) == 2


async def test_job_ids_follow_arrival_order(store: Store) -> None:
    """Job ids grow with arrival: across deliveries, and within one in the given order."""
    await store.accept(delivery("d-1"), [new_job("x"), new_job("y")])
    await store.accept(delivery("d-2"), [new_job("x")])
    jobs = sorted(await store.list_jobs(), key=lambda job: job.id)
    assert [(job.delivery_id, job.lane) for job in jobs] == [("d-1", "x"), ("d-1", "y"), ("d-2", "x")]


async def test_same_commit_twice_in_a_lane_gives_two_jobs(store: Store) -> None:
    """No uniqueness on lane and commit: a re-push of a sha is a new job; the worker coalesces."""
    await store.accept(delivery("d-1"), [new_job(after=SHA_C)])
    await store.accept(delivery("d-2"), [new_job(after=SHA_C)])
    assert len(await store.lane_jobs("lane-1", history=0)) == 2


# --- claim_lane -----------------------------------------------------------------------------------


async def test_claim_finds_nothing_in_an_empty_store(store: Store) -> None:
    """No lanes, no claim."""
    assert await store.claim_lane(owner=OWNER, now=1000.0, lease=30.0) is None


async def test_lane_is_claimable_once_its_earliest_job_is_due(store: Store) -> None:
    """A lane's due time is its earliest job's; before that nobody claims it."""
    await store.accept(delivery(), [new_job(due_at=110.0), new_job(due_at=105.0)])
    assert await store.claim_lane(owner=OWNER, now=104.9, lease=30.0) is None
    assert await store.claim_lane(owner=OWNER, now=105.0, lease=30.0) == "lane-1"


async def test_later_delivery_brings_its_lane_forward(store: Store) -> None:
    """Accepting an earlier-due job lowers the lane's due time; a later-due one never raises it."""
    await store.accept(delivery("d-1"), [new_job(due_at=200.0)])
    await store.accept(delivery("d-2"), [new_job(due_at=150.0)])
    await store.accept(delivery("d-3"), [new_job(due_at=300.0)])
    assert await store.claim_lane(owner=OWNER, now=149.0, lease=30.0) is None
    assert await store.claim_lane(owner=OWNER, now=150.0, lease=30.0) == "lane-1"


async def test_claim_takes_the_lane_due_first(store: Store) -> None:
    """Of several due lanes, the one due earliest is claimed first."""
    await store.accept(delivery("d-1"), [new_job("late", due_at=120.0)])
    await store.accept(delivery("d-2"), [new_job("early", due_at=110.0)])
    assert await store.claim_lane(owner=OWNER, now=200.0, lease=30.0) == "early"
    assert await store.claim_lane(owner=OWNER, now=200.0, lease=30.0) == "late"


async def test_leased_lane_is_not_claimed_again(store: Store) -> None:
    """While its lease lasts (up to and including lease_until), a lane has one holder."""
    await store.accept(delivery(), [new_job()])
    assert await store.claim_lane(owner=OWNER, now=100.0, lease=30.0) == "lane-1"
    assert await store.claim_lane(owner=OTHER, now=130.0, lease=30.0) is None


async def test_expired_lease_lets_another_owner_claim(store: Store) -> None:
    """Once lease_until has passed, the lane is claimable again (its holder is presumed dead)."""
    await store.accept(delivery(), [new_job()])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert await store.claim_lane(owner=OTHER, now=130.5, lease=30.0) == "lane-1"
    assert not await store.renew_lane("lane-1", owner=OWNER, now=131.0, lease=30.0)


async def test_concurrent_claims_never_share_a_lane(make_store: StoreFactory) -> None:
    """Concurrent claimers (two replicas) get distinct lanes, as many as there are due."""
    first, second = await make_store(), await make_store()
    await first.accept(delivery(), [new_job(f"lane-{index}") for index in range(5)])
    claims = await asyncio.gather(
        *(
            replica.claim_lane(owner=f"w{index}", now=200.0, lease=30.0)
            for index, replica in enumerate([first, second] * 6)
        )
    )
    won = [lane for lane in claims if lane is not None]
    assert sorted(won) == [f"lane-{index}" for index in range(5)]


# --- renew_lane and release_lane ------------------------------------------------------------------


async def test_renew_extends_the_holders_lease(store: Store) -> None:
    """A renewed lease keeps others out until the new lease_until."""
    await store.accept(delivery(), [new_job()])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert await store.renew_lane("lane-1", owner=OWNER, now=120.0, lease=30.0)
    assert await store.claim_lane(owner=OTHER, now=140.0, lease=30.0) is None


async def test_renew_fails_for_another_owner(store: Store) -> None:
    """Only the holder can renew."""
    await store.accept(delivery(), [new_job()])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert not await store.renew_lane("lane-1", owner=OTHER, now=110.0, lease=30.0)


async def test_renew_fails_once_the_lease_expired(store: Store) -> None:
    """An expired lease cannot be revived, even if nobody took the lane: claim it again instead."""
    await store.accept(delivery(), [new_job()])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert not await store.renew_lane("lane-1", owner=OWNER, now=130.1, lease=30.0)


async def test_release_makes_the_lane_due_at_its_earliest_waiting_job(store: Store) -> None:
    """Release recomputes next due from waiting jobs: the lane comes back when the next one is due."""
    await store.accept(delivery("d-1"), [new_job(due_at=100.0)])
    await store.accept(delivery("d-2"), [new_job(due_at=500.0)])
    first, _ = await store.lane_jobs("lane-1", history=0)
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert await store.apply([JobUpdate(first.id, {"state": "done"})], now=101.0, owner=OWNER)
    await store.release_lane("lane-1", owner=OWNER)
    assert await store.claim_lane(owner=OTHER, now=499.0, lease=30.0) is None
    assert await store.claim_lane(owner=OTHER, now=500.0, lease=30.0) == "lane-1"


async def test_released_lane_without_due_jobs_is_never_claimed(store: Store) -> None:
    """A lane whose jobs are all finished is not due at all."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.apply([JobUpdate(job.id, {"state": "superseded"})], now=101.0, owner=OWNER)
    await store.release_lane("lane-1", owner=OWNER)
    assert await store.claim_lane(owner=OTHER, now=10_000.0, lease=30.0) is None


async def test_release_keeps_a_lane_due_for_a_cancel_wanted_job(store: Store) -> None:
    """An active job that wants its invocation cancelled keeps its lane due."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    update: dict[str, FieldValue] = {"state": "active", "cancel_wanted": True, "due_at": 150.0}
    await store.apply([JobUpdate(job.id, update)], now=101.0, owner=OWNER)
    await store.release_lane("lane-1", owner=OWNER)
    assert await store.claim_lane(owner=OTHER, now=150.0, lease=30.0) == "lane-1"


async def test_a_held_lane_is_not_claimed_before_its_hold_ends(store: Store) -> None:
    """A lane released with hold_until is skipped by claims until then, new deliveries or not."""
    await store.accept(delivery("d-1"), [new_job(due_at=100.0)])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.release_lane("lane-1", owner=OWNER, hold_until=105.0)
    await store.accept(delivery("d-2"), [new_job(due_at=101.0)])
    assert await store.claim_lane(owner=OTHER, now=104.9, lease=30.0) is None
    assert await store.claim_lane(owner=OTHER, now=105.0, lease=30.0) == "lane-1"


async def test_release_without_hold_lifts_an_earlier_hold(store: Store) -> None:
    """Releasing without hold_until clears the lane's hold."""
    await store.accept(delivery("d-1"), [new_job(due_at=100.0)])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.release_lane("lane-1", owner=OWNER, hold_until=500.0)
    await store.claim_lane(owner=OWNER, now=500.0, lease=30.0)
    await store.release_lane("lane-1", owner=OWNER)
    await store.accept(delivery("d-2"), [new_job(due_at=501.0)])
    assert await store.claim_lane(owner=OTHER, now=501.0, lease=30.0) == "lane-1"


async def test_release_by_another_owner_changes_nothing(store: Store) -> None:
    """Releasing a lane one does not hold is a no-op: the holder keeps it."""
    await store.accept(delivery(), [new_job()])
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.release_lane("lane-1", owner=OTHER)
    assert await store.renew_lane("lane-1", owner=OWNER, now=110.0, lease=30.0)


# --- lane_jobs ------------------------------------------------------------------------------------


async def test_lane_jobs_returns_live_jobs_and_recent_history_by_id(store: Store) -> None:
    """Waiting, active and cancel-wanted jobs, plus the newest `history` others, ordered by id."""
    await store.accept(delivery(), [new_job() for _ in range(7)])
    await store.accept(delivery("d-other"), [new_job("lane-2")])
    ids = [job.id for job in await store.lane_jobs("lane-1", history=0)]
    updates: dict[int, dict[str, FieldValue]] = {
        ids[0]: {"state": "done"},
        ids[1]: {"state": "done", "cancel_wanted": True},
        ids[2]: {"state": "failed"},
        ids[3]: {"state": "superseded"},
        ids[4]: {"state": "active"},
        ids[5]: {"state": "creating"},
    }
    await store.apply([JobUpdate(job_id, fields) for job_id, fields in updates.items()], now=101.0)
    jobs = await store.lane_jobs("lane-1", history=2)
    assert [job.id for job in jobs] == [ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]]


async def test_lane_jobs_without_history_returns_live_jobs_only(store: Store) -> None:
    """history=0 leaves out every finished job."""
    await store.accept(delivery(), [new_job(), new_job()])
    first, second = await store.lane_jobs("lane-1", history=0)
    await finish(store, first.id)
    assert [job.id for job in await store.lane_jobs("lane-1", history=0)] == [second.id]


async def test_lane_snapshot_splits_lane_jobs_into_whole_jobs_and_links(store: Store) -> None:
    """The worker's read: live and cancel-wanted jobs whole, the newest `history` others as links."""
    # Pushes that do not follow one another, so none replaces another on arrival.
    await store.accept(
        delivery(), [new_job(before=f"{2 * n:040x}", after=f"{2 * n + 1:040x}") for n in range(7)]
    )
    ids = [job.id for job in await store.lane_jobs("lane-1", history=0)]
    updates: dict[int, dict[str, FieldValue]] = {
        ids[0]: {"state": "done"},
        ids[1]: {"state": "done", "cancel_wanted": True},
        ids[2]: {"state": "failed"},
        ids[3]: {"state": "superseded"},
        ids[4]: {"state": "active"},
    }
    await store.apply([JobUpdate(job_id, fields) for job_id, fields in updates.items()], now=101.0)
    everything = await store.lane_jobs("lane-1", history=2)
    snapshot = await store.lane_snapshot("lane-1", history=2)
    assert snapshot.jobs == [job for job in everything if job.id in {ids[1], ids[4], ids[5], ids[6]}]
    assert snapshot.history == [
        Link(job.id, job.before, job.after, job.pushed_at) for job in everything if job.id in {ids[2], ids[3]}
    ]
    assert (await store.lane_snapshot("lane-1", history=0)).history == []
    with pytest.raises(ValueError, match="history"):
        await store.lane_snapshot("lane-1", history=-1)


@pytest.mark.parametrize("seed", range(3))
async def test_lane_reads_match_their_definition_on_generated_lanes(store: Store, seed: int) -> None:
    """Interleaved lanes, pushes stored one by one and in group commits (some replacing the push they
    follow on arrival), jobs then moved to every state: each lane read returns the live and
    cancel-wanted jobs, and the ``history`` newest others, as the definition says. SQLite walks a chain
    of the lane's jobs for the history (migration 0005), PostgreSQL reads an index: both must agree."""
    rng = random.Random(seed)
    lanes = ["lane-1", "lane-2", "lane-3"]
    after = dict.fromkeys(lanes, SHA_A)
    for n in range(40):
        accepts = []
        for m in range(rng.choice((1, 1, 3))):
            jobs = []
            for lane in rng.sample(lanes, rng.choice((1, 2))):
                before = after[lane] if rng.random() < 0.5 else f"{rng.getrandbits(160):040x}"
                after[lane] = f"{rng.getrandbits(160):040x}"
                jobs.append(new_job(lane, before=before, after=after[lane], collection=f"c-{n}-{m}"))
            accepts.append((delivery(f"d-{n}-{m}", received_at=100.0 + n), jobs))
        if len(accepts) == 1:
            await store.accept(*accepts[0])
        else:
            assert all(result is not None for result in await store.accept_many(accepts))
    states: list[dict[str, FieldValue]] = [
        {"state": state} for state in ("done", "superseded", "failed", "dead", "active", "creating", "queued")
    ] + [{"state": "done", "cancel_wanted": True}, {"state": "active", "cancel_wanted": True}]
    every = await store.list_jobs(limit=1000)
    await store.apply(
        [JobUpdate(job.id, rng.choice(states)) for job in every if rng.random() < 0.7], now=200.0
    )
    for lane in lanes:
        jobs = sorted(await store.list_jobs(lane=lane, limit=1000), key=lambda job: job.id)
        assert len(jobs) > 10
        live = [job for job in jobs if job.state in LIVE or job.cancel_wanted]
        others = [job for job in jobs if job not in live]
        for history in (0, 1, 4, 50):
            newest = others[len(others) - history :] if history else []
            assert [job.id for job in await store.lane_jobs(lane, history=history)] == sorted(
                job.id for job in live + newest
            )
            snapshot = await store.lane_snapshot(lane, history=history)
            assert snapshot.jobs == live
            assert snapshot.history == [Link(job.id, job.before, job.after, job.pushed_at) for job in newest]


async def test_lane_jobs_rejects_negative_history(store: Store) -> None:
    """A negative history is a programming error."""
    with pytest.raises(ValueError, match="history"):
        await store.lane_jobs("lane-1", history=-1)


# --- apply ----------------------------------------------------------------------------------------


async def test_apply_sets_fields_and_updated_at(store: Store) -> None:
    """Each given field changes, updated_at becomes now, and nothing else moves."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    fields: dict[str, FieldValue] = {
        "state": JobState.ACTIVE,
        "attempts": 1,
        "first_attempt_at": 101.5,
        "invocation_id": "inv-1",
        "invocation_status": InvocationStatus.PENDING,
        "poll_at": 130.0,
        "error": "boom",
        "source_id": "src-2",
    }
    assert await store.apply([JobUpdate(job.id, fields)], now=102.0)
    changed = await store.get_job(job.id)
    assert changed is not None
    for name, value in fields.items():
        assert getattr(changed, name) == value, name
    assert type(changed.invocation_status) is InvocationStatus
    assert (changed.updated_at, changed.due_at, changed.collection) == (102.0, job.due_at, job.collection)


async def test_apply_can_clear_nullable_fields(store: Store) -> None:
    """None clears a nullable field."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.apply([JobUpdate(job.id, {"error": "boom", "poll_at": 5.0})], now=101.0)
    await store.apply([JobUpdate(job.id, {"error": None, "poll_at": None})], now=102.0)
    changed = await store.get_job(job.id)
    assert changed is not None
    assert (changed.error, changed.poll_at) == (None, None)


@pytest.mark.parametrize(
    "fields",
    [
        {"lane": "elsewhere"},
        {"updated_at": 1.0},
        {"state": "bogus"},
        {"state": None},
        {"attempts": "1"},
        {"cancel_wanted": 1},
        {"due_at": None},
        {"invocation_status": "exploded"},
        {"poll_at": "soon"},
    ],
)
async def test_apply_refuses_a_bad_update_and_changes_nothing(
    store: Store, fields: dict[str, object]
) -> None:
    """A field outside UPDATABLE_FIELDS or a value of the wrong kind raises before any change."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    good = JobUpdate(job.id, {"error": "set"})
    with pytest.raises(ValueError, match="job field"):
        await store.apply([good, JobUpdate(job.id, fields)], now=101.0)
    assert await store.get_job(job.id) == job


async def test_apply_with_owner_requires_the_lease(store: Store) -> None:
    """A fenced apply by someone who does not hold the lane returns False and changes nothing."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert not await store.apply([JobUpdate(job.id, {"state": "creating"})], now=101.0, owner=OTHER)
    assert await store.get_job(job.id) == job


async def test_apply_with_an_expired_lease_is_refused(store: Store) -> None:
    """The holder's fenced apply fails once its lease_until has passed."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert await store.apply([JobUpdate(job.id, {"attempts": 1})], now=130.0, owner=OWNER)
    assert not await store.apply([JobUpdate(job.id, {"attempts": 2})], now=130.1, owner=OWNER)
    changed = await store.get_job(job.id)
    assert changed is not None
    assert changed.attempts == 1


async def test_fenced_apply_is_all_or_nothing_across_lanes(store: Store) -> None:
    """If one job's lane is not held, none of the updates happen."""
    await store.accept(delivery(), [new_job("lane-1"), new_job("lane-2", due_at=900.0)])
    held, other = sorted(await store.list_jobs(), key=lambda job: job.id)
    assert await store.claim_lane(owner=OWNER, now=100.0, lease=30.0) == "lane-1"
    updates = [JobUpdate(held.id, {"attempts": 1}), JobUpdate(other.id, {"attempts": 1})]
    assert not await store.apply(updates, now=101.0, owner=OWNER)
    assert await store.get_job(held.id) == held


@pytest.mark.parametrize("same_fields", [True, False], ids=["same-fields", "mixed-fields"])
async def test_fenced_apply_with_lease_renews_the_lanes_it_touches(store: Store, same_fields: bool) -> None:
    """apply(lease=...) renews each updated job's lane in the same transaction: the holder keeps the
    lane past its old lease_until, and a lane it did not touch keeps its old lease."""
    await store.accept(delivery("d-1"), [new_job("lane-1"), new_job("lane-2")])
    await store.accept(delivery("d-2"), [new_job("lane-1", after="c" * 40)])
    claimed = {await store.claim_lane(owner=OWNER, now=100.0, lease=30.0) for _ in range(2)}
    assert claimed == {"lane-1", "lane-2"}
    first, second = sorted((await store.lane_jobs("lane-1", history=0)), key=lambda job: job.id)
    other = {"attempts": 1} if same_fields else {"attempts": 2}
    updates = [JobUpdate(first.id, {"attempts": 1}), JobUpdate(second.id, other)]
    assert await store.apply(updates, now=120.0, owner=OWNER, lease=30.0)
    # lane-1 now runs to 150, lane-2 still to 130
    assert await store.claim_lane(owner=OTHER, now=140.0, lease=30.0) == "lane-2"
    assert await store.claim_lane(owner=OTHER, now=140.0, lease=30.0) is None
    assert await store.renew_lane("lane-1", owner=OWNER, now=150.0, lease=30.0)
    assert await store.claim_lane(owner=OTHER, now=180.1, lease=30.0) == "lane-1"


async def test_refused_apply_with_lease_renews_nothing(store: Store) -> None:
    """A fenced apply that fails (the lease expired) does not revive the lease."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert not await store.apply([JobUpdate(job.id, {"attempts": 1})], now=130.1, owner=OWNER, lease=30.0)
    assert not await store.renew_lane("lane-1", owner=OWNER, now=130.2, lease=30.0)
    assert await store.claim_lane(owner=OTHER, now=130.2, lease=30.0) == "lane-1"


async def test_apply_with_lease_needs_an_owner(store: Store) -> None:
    """Renewing leases without saying whose is a programming error, refused before anything changes."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    with pytest.raises(ValueError, match="owner"):
        await store.apply([JobUpdate(job.id, {"attempts": 1})], now=101.0, lease=30.0)
    assert await store.get_job(job.id) == job


async def test_apply_without_owner_is_not_fenced(store: Store) -> None:
    """The tracker updates active jobs without holding their lane."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    assert await store.apply([JobUpdate(job.id, {"poll_at": 140.0})], now=101.0)


async def test_later_update_of_the_same_job_wins(store: Store) -> None:
    """Updates apply in the given order."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.apply([JobUpdate(job.id, {"attempts": 1}), JobUpdate(job.id, {"attempts": 2})], now=101.0)
    changed = await store.get_job(job.id)
    assert changed is not None
    assert changed.attempts == 2


async def test_apply_skips_jobs_that_do_not_exist(store: Store) -> None:
    """An update of a missing (e.g. pruned) job is ignored; the others happen."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    assert await store.apply(
        [JobUpdate(job.id + 1000, {"attempts": 3}), JobUpdate(job.id, {"attempts": 1})], now=101.0
    )
    changed = await store.get_job(job.id)
    assert changed is not None
    assert changed.attempts == 1


async def test_retry_scheduled_under_a_lease_makes_the_lane_due(store: Store) -> None:
    """A job put back to queued with a later due_at makes its lane claimable then, lease or not."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.apply([JobUpdate(job.id, {"state": "done"})], now=101.0, owner=OWNER)
    await store.release_lane("lane-1", owner=OWNER)
    await store.apply([JobUpdate(job.id, {"state": "queued", "due_at": 400.0})], now=102.0)
    assert await store.claim_lane(owner=OTHER, now=399.0, lease=30.0) is None
    assert await store.claim_lane(owner=OTHER, now=400.0, lease=30.0) == "lane-1"


async def test_apply_of_nothing_succeeds(store: Store) -> None:
    """An empty list of updates changes nothing and is not refused."""
    assert await store.apply([], now=100.0, owner=OWNER)


# --- due_polls, get_job, list_jobs ----------------------------------------------------------------


async def test_due_polls_returns_active_jobs_whose_poll_time_came_earliest_first(store: Store) -> None:
    """Only active jobs with poll_at <= now, by poll_at, at most `limit`."""
    await store.accept(delivery(), [new_job() for _ in range(5)])
    ids = [job.id for job in await store.lane_jobs("lane-1", history=0)]
    polls = {ids[0]: 150.0, ids[1]: 120.0, ids[2]: 130.0, ids[3]: 900.0}
    updates = [JobUpdate(job_id, {"state": "active", "poll_at": at}) for job_id, at in polls.items()]
    updates.append(JobUpdate(ids[4], {"state": "done", "poll_at": 100.0}))
    await store.apply(updates, now=101.0)
    assert [job.id for job in await store.due_polls(now=200.0, limit=10)] == [ids[1], ids[2], ids[0]]
    assert [job.id for job in await store.due_polls(now=200.0, limit=1)] == [ids[1]]


async def test_get_job_of_an_unknown_id_is_none(store: Store) -> None:
    """A missing job is None, not an error."""
    assert await store.get_job(12345) is None


async def test_list_jobs_is_newest_first_up_to_limit(store: Store) -> None:
    """Without filters: every job, newest first, at most `limit`."""
    await store.accept(delivery(), [new_job(f"lane-{index}") for index in range(4)])
    jobs = await store.list_jobs(limit=3)
    assert [job.lane for job in jobs] == ["lane-3", "lane-2", "lane-1"]


async def test_list_jobs_filters_by_state_and_lane(store: Store) -> None:
    """States and lane filter together."""
    await store.accept(delivery(), [new_job("x"), new_job("x"), new_job("y")])
    first, second, third = sorted(await store.list_jobs(), key=lambda job: job.id)
    await store.apply(
        [JobUpdate(first.id, {"state": "failed"}), JobUpdate(third.id, {"state": "dead"})], now=101.0
    )
    failed_or_dead = {JobState.FAILED, JobState.DEAD}
    assert [job.id for job in await store.list_jobs(states=failed_or_dead)] == [third.id, first.id]
    assert [job.id for job in await store.list_jobs(states=failed_or_dead, lane="x")] == [first.id]
    assert [job.id for job in await store.list_jobs(lane="x")] == [second.id, first.id]


async def test_list_jobs_with_no_states_matches_nothing(store: Store) -> None:
    """An empty states filter is not 'any state'."""
    await store.accept(delivery(), [new_job()])
    assert await store.list_jobs(states=[]) == []


# --- requeue and counts ---------------------------------------------------------------------------


async def test_requeue_puts_failed_and_dead_jobs_back_with_a_fresh_budget(store: Store) -> None:
    """Requeued jobs are queued, due now, with attempts, first attempt and error reset."""
    await store.accept(delivery(), [new_job(), new_job()])
    failed, dead = await store.lane_jobs("lane-1", history=0)
    spent: dict[str, FieldValue] = {"attempts": 7, "first_attempt_at": 100.0, "error": "400 Bad Request"}
    await store.apply(
        [JobUpdate(failed.id, {**spent, "state": "failed"}), JobUpdate(dead.id, {**spent, "state": "dead"})],
        now=101.0,
    )
    assert await store.requeue([failed.id, dead.id], now=500.0) == 2
    for job_id in (failed.id, dead.id):
        job = await store.get_job(job_id)
        assert job is not None
        assert (job.state, job.due_at, job.attempts, job.first_attempt_at, job.error, job.updated_at) == (
            JobState.QUEUED,
            500.0,
            0,
            None,
            None,
            500.0,
        )


async def test_requeue_leaves_other_states_alone(store: Store) -> None:
    """Only failed and dead jobs are requeued; unknown ids are ignored; the count says how many."""
    await store.accept(delivery(), [new_job(), new_job()])
    done, dead = await store.lane_jobs("lane-1", history=0)
    await store.apply(
        [JobUpdate(done.id, {"state": "done"}), JobUpdate(dead.id, {"state": "dead"})], now=101.0
    )
    assert await store.requeue([done.id, dead.id, 999_999], now=500.0) == 1
    still = await store.get_job(done.id)
    assert still is not None
    assert still.state is JobState.DONE


async def test_requeued_job_makes_its_lane_due_now(store: Store) -> None:
    """A requeued job's lane is claimable at once."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.apply([JobUpdate(job.id, {"state": "failed"})], now=101.0, owner=OWNER)
    await store.release_lane("lane-1", owner=OWNER)
    await store.requeue([job.id], now=700.0)
    assert await store.claim_lane(owner=OWNER, now=700.0, lease=30.0) == "lane-1"


async def test_counts_name_every_state(store: Store) -> None:
    """Counts have a key for every JobState, zero included."""
    await store.accept(delivery(), [new_job(), new_job(), new_job()])
    first, *_ = await store.list_jobs()
    await store.apply([JobUpdate(first.id, {"state": "dead"})], now=101.0)
    assert dict(await store.counts()) == {state.value: 0 for state in JobState} | {"queued": 2, "dead": 1}


# --- sources --------------------------------------------------------------------------------------


async def test_unknown_source_key_is_none(store: Store) -> None:
    """Nothing remembered yet."""
    assert await store.get_source("db:acme") is None


async def test_first_source_id_written_wins(store: Store) -> None:
    """put_source never overwrites: two replicas resolving one source agree on the first id."""
    await store.put_source("db:acme", "src-1")
    await store.put_source("db:acme", "src-2")
    assert await store.get_source("db:acme") == "src-1"


# --- prune ----------------------------------------------------------------------------------------


async def test_prune_forgets_old_deliveries(store: Store) -> None:
    """Deliveries received before the cut are deleted, so a very late redelivery is new again."""
    await store.accept(delivery("old", received_at=100.0), [])
    await store.accept(delivery("new", received_at=200.0), [])
    assert await store.prune(deliveries_before=150.0, jobs_before=0.0) == (1, 0)
    assert await store.accept(delivery("old", received_at=300.0), [])
    assert not await store.accept(delivery("new", received_at=300.0), [])


async def test_prune_deletes_only_old_finished_jobs(store: Store) -> None:
    """Done and superseded jobs last updated before the cut go; others stay whatever their age."""
    await store.accept(delivery(), [new_job() for _ in range(5)])
    ids = [job.id for job in await store.lane_jobs("lane-1", history=0)]
    states = ["done", "superseded", "failed", "active"]
    await store.apply([JobUpdate(i, {"state": s}) for i, s in zip(ids, states, strict=False)], now=110.0)
    await store.apply([JobUpdate(ids[4], {"state": "done"})], now=300.0)
    assert await store.prune(deliveries_before=0.0, jobs_before=200.0) == (0, 2)
    assert [job.id for job in await store.list_jobs()] == [ids[4], ids[3], ids[2]]


async def test_prune_drops_lanes_left_empty_and_they_come_back(store: Store) -> None:
    """An emptied lane is deleted by prune; a later push to it works as for a new lane."""
    await store.accept(delivery("d-1"), [new_job()])
    [job] = await store.list_jobs()
    await finish(store, job.id, now=110.0)
    await store.prune(deliveries_before=0.0, jobs_before=200.0)
    await store.accept(delivery("d-2"), [new_job(due_at=400.0)])
    assert await store.claim_lane(owner=OWNER, now=400.0, lease=30.0) == "lane-1"


async def test_prune_keeps_a_leased_lane(store: Store) -> None:
    """A lane someone holds survives prune even with no jobs; its holder can still release it."""
    await store.accept(delivery(), [new_job()])
    [job] = await store.list_jobs()
    await store.claim_lane(owner=OWNER, now=100.0, lease=30.0)
    await store.apply([JobUpdate(job.id, {"state": "done"})], now=101.0, owner=OWNER)
    await store.prune(deliveries_before=0.0, jobs_before=200.0)
    assert await store.renew_lane("lane-1", owner=OWNER, now=110.0, lease=30.0)


async def test_prune_with_a_limit_deletes_the_oldest_first_and_lanes_last(store: Store) -> None:
    """``limit``: at most that many deliveries and finished jobs per call, oldest first; the lane they
    leave empty goes in the call that finds fewer than ``limit`` of both, so repeated calls end with
    what one unlimited call leaves."""
    for n in range(5):
        await store.accept(delivery(f"d-{n}", received_at=100.0 + n), [new_job()])
    jobs = sorted(await store.list_jobs(limit=10), key=lambda job: job.id)
    for n, job in enumerate(jobs):
        await finish(store, job.id, now=110.0 + n)
    assert await store.prune(deliveries_before=1_000.0, jobs_before=1_000.0, limit=2) == (2, 2)
    left = sorted(job.id for job in await store.list_jobs(limit=10))
    assert left == [job.id for job in jobs[2:]]  # the two updated first went first
    assert await store.accept(delivery("d-0", received_at=500.0), [])  # pruned: new again
    assert not await store.accept(delivery("d-2", received_at=500.0), [])  # kept: a redelivery
    assert await store.prune(deliveries_before=400.0, jobs_before=1_000.0, limit=2) == (2, 2)
    assert await store.prune(deliveries_before=400.0, jobs_before=1_000.0, limit=2) == (1, 1)
    assert await store.list_jobs(limit=10) == []
    await store.accept(delivery("d-9", received_at=700.0), [new_job(due_at=700.0)])
    assert await store.claim_lane(owner=OWNER, now=700.0, lease=30.0) == "lane-1"


# --- lifecycle ------------------------------------------------------------------------------------


async def test_ping_answers_when_open(store: Store) -> None:
    """An open store answers ping."""
    await store.ping()


async def test_closed_store_refuses_calls(store: Store) -> None:
    """After close, calls raise StoreClosed rather than hang."""
    await store.close()
    with pytest.raises(StoreClosed):
        await store.counts()


def test_job_mapping_names_every_job_field_in_order() -> None:
    """The positional row mapping (``transactions._job``) takes Job's fields in Job's order."""
    import dataclasses
    import inspect

    from bridge.core.jobs import Job
    from bridge.store import transactions

    assert tuple(inspect.signature(transactions._job).parameters) == tuple(
        field.name for field in dataclasses.fields(Job)
    )
