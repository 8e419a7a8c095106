"""Newest wins: the lane plan coalesces, ignores late deliveries and cancels what a newer push replaced."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.jobs import InvocationStatus, Job, JobState
from bridge.core.supersede import Link, newest, plan_lane, superseded_on_arrival, to_cancel
from tests.factories import active, make_job, sha


def test_empty_lane_does_nothing() -> None:
    """No jobs, no plan."""
    plan = plan_lane([], now=0)
    assert plan.create is None
    assert plan.supersede == ()


def test_single_due_job_is_created() -> None:
    """One queued, due job is created."""
    assert plan_lane([make_job(1, before=0, after=1)], now=10).create == 1


def test_chain_decides_over_arrival_order() -> None:
    """A push whose before is another's after is newer, even if it arrived first."""
    later_push = make_job(1, before=1, after=2)
    earlier_push = make_job(2, before=0, after=1)
    assert newest([later_push, earlier_push]).id == 1


def test_coalescing_creates_only_the_newest() -> None:
    """Of several waiting pushes, only the newest is created; the others are superseded."""
    jobs = [make_job(1, before=0, after=1), make_job(2, before=1, after=2), make_job(3, before=2, after=3)]
    plan = plan_lane(jobs, now=10)
    assert plan.create == 3
    assert set(plan.supersede) == {1, 2}


def test_late_delivery_of_an_older_push_changes_nothing_else() -> None:
    """An old push arriving after a newer one was created is superseded; the newer is not cancelled."""
    created = active(make_job(1, before=1, after=2), "inv-2")
    late = make_job(2, before=0, after=1)
    plan = plan_lane([created, late], now=10)
    assert plan.create is None
    assert plan.supersede == (2,)
    assert plan.cancel == ()


def test_late_delivery_reached_through_a_long_chain() -> None:
    """A push several links behind the head is recognised as older."""
    head = active(make_job(1, before=3, after=4), "inv")
    middle = replace(make_job(2, before=2, after=3), state=JobState.SUPERSEDED)
    older = replace(make_job(3, before=1, after=2), state=JobState.DONE)
    late = make_job(4, before=0, after=1)
    assert plan_lane([head, middle, older, late], now=10).supersede == (4,)


def test_broken_chain_falls_back_to_pushed_at() -> None:
    """Without a chain link, the later pushed_at wins over arrival order."""
    newer = make_job(1, before=10, after=11, pushed_at=200)
    older = make_job(2, before=20, after=21, pushed_at=100)
    assert newest([newer, older]).id == 1


def test_same_second_without_chain_falls_back_to_arrival() -> None:
    """Equal pushed_at and no chain: the later arrival wins."""
    assert (
        newest(
            [make_job(1, before=10, after=11, pushed_at=5), make_job(2, before=20, after=21, pushed_at=5)]
        ).id
        == 2
    )


def test_branch_reset_cycle_does_not_loop() -> None:
    """A branch pushed A->B->A still yields a newest push (by arrival) without looping."""
    jobs = [make_job(1, before=0, after=1), make_job(2, before=1, after=2), make_job(3, before=2, after=1)]
    assert newest(jobs).id == 3


def test_debounce_waits_for_the_newest_due_time() -> None:
    """A newest job not yet due is not created; older waiting ones are still superseded."""
    jobs = [make_job(1, before=0, after=1, due_at=5), make_job(2, before=1, after=2, due_at=12)]
    plan = plan_lane(jobs, now=10)
    assert plan.create is None
    assert plan.wait_until == 12
    assert plan.supersede == (1,)


def test_creating_job_is_resumed_when_newest() -> None:
    """A job left in creating (unknown outcome) is resumed when it is still the newest."""
    job = replace(make_job(1, before=0, after=1), state=JobState.CREATING)
    assert plan_lane([job], now=10).create == 1


def test_replaced_creating_job_is_an_orphan_to_look_up() -> None:
    """A replaced job whose create may have happened is looked up, not silently superseded."""
    orphan = replace(make_job(1, before=0, after=1), state=JobState.CREATING)
    plan = plan_lane([orphan, make_job(2, before=1, after=2)], now=10)
    assert plan.orphans == (1,)
    assert plan.supersede == ()
    assert plan.create == 2


def test_same_commit_already_in_flight_is_a_duplicate() -> None:
    """A second job for a commit whose invocation is active creates nothing."""
    first = active(make_job(1, before=0, after=1), "inv")
    second = make_job(2, before=0, after=1)
    plan = plan_lane([first, second], now=10)
    assert plan.create is None
    assert plan.duplicate == 2


@pytest.mark.parametrize(("due_at", "expected"), [(5.0, (1,)), (15.0, ())])
def test_cancel_wanted_jobs_are_cancelled_when_due(due_at: float, expected: tuple[int, ...]) -> None:
    """Invocations marked for cancelling are cancelled once their (retry) time has come."""
    old = replace(active(make_job(1, before=0, after=1), "inv-1"), cancel_wanted=True, due_at=due_at)
    head = active(make_job(2, before=1, after=2), "inv-2")
    assert plan_lane([old, head], now=10).cancel == expected


def test_to_cancel_names_older_pending_invocations_only() -> None:
    """After creating, the lane's other pending invocations are to be cancelled; started ones are not."""
    pending = active(make_job(1, before=0, after=1), "inv-1")
    processing = active(make_job(2, before=1, after=2), "inv-2", InvocationStatus.PROCESSING)
    done = replace(make_job(3, before=2, after=3), state=JobState.DONE)
    created = active(make_job(4, before=3, after=4), "inv-4")
    assert to_cancel([pending, processing, done, created], created=4) == [1]


def reference_newest(jobs: Sequence[Job]) -> Job:
    """The former quadratic ``newest``, kept as the specification the linear one must match exactly."""
    by_after: dict[str, list[int]] = {}
    for job in jobs:
        by_after.setdefault(job.after, []).append(job.id)
    preds = {job.id: [p for p in by_after.get(job.before, []) if p != job.id] for job in jobs}

    def ancestors(job_id: int) -> set[int]:
        seen: set[int] = set()
        stack = list(preds[job_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(preds[current])
        return seen

    found = {job.id: ancestors(job.id) for job in jobs}
    heads = [
        job
        for job in jobs
        if not any(job.id in found[other.id] and other.id not in found[job.id] for other in jobs)
    ]
    return max(heads or jobs, key=lambda job: (job.pushed_at or 0, job.id))


@st.composite
def lanes(draw: st.DrawFn) -> list[Job]:
    """Small lanes over a few commits, so chains, cycles, shared commits and before == after are common."""
    commit = st.integers(0, draw(st.integers(0, 7)))
    pushes = draw(st.lists(st.tuples(commit, commit, st.none() | st.integers(0, 3)), max_size=40))
    ids = st.lists(st.integers(1, 60), min_size=len(pushes), max_size=len(pushes), unique=True)
    return [
        make_job(job_id, before=before, after=after, pushed_at=pushed_at)
        for job_id, (before, after, pushed_at) in zip(draw(ids), pushes, strict=True)
    ]


@settings(max_examples=300, deadline=None)
@given(jobs=lanes())
def test_newest_matches_the_quadratic_reference(jobs: list[Job]) -> None:
    """The linear newest picks the very job the quadratic definition picks, cycles and repeats included."""
    if not jobs:
        with pytest.raises(ValueError, match="empty"):
            newest(jobs)
        return
    assert newest(jobs) is reference_newest(jobs)


@pytest.mark.parametrize(
    ("pushes", "expected"),
    [
        ([(0, 1), (1, 1)], 2),  # an empty push (before == after) still descends from the push before it
        ([(1, 1), (1, 1), (0, 1)], 2),  # two of them descend from each other: both heads, arrival decides
        ([(0, 1), (0, 1), (1, 2)], 3),  # a push delivered twice: the push on top of it is newer than both
        ([(1, 2), (0, 1), (2, 1), (1, 3)], 4),  # reset back and forth (1 -> 2 -> 1), then a push on top
        ([(2, 3), (0, 1), (1, 2), (5, 6)], 4),  # a broken chain: two heads, arrival decides
        ([(3, 4), (1, 2), (2, 1), (1, 3), (4, 3)], 5),  # resets 1 <-> 2, then 1 -> 3, then resets 3 <-> 4
        ([(2, 1), (2, 0), (1, 1), (0, 1), (2, 2)], 3),  # empty pushes on 2, then on 1 (after 2 -> 0 -> 1)
    ],
)
def test_newest_in_small_tricky_lanes(pushes: list[tuple[int, int]], expected: int) -> None:
    """Shared commits, empty pushes, cycles, broken chains; pushes are (before, after), ids count from 1."""
    jobs = [make_job(n, before=before, after=after) for n, (before, after) in enumerate(pushes, 1)]
    assert newest(jobs).id == expected
    assert reference_newest(jobs).id == expected


@pytest.mark.parametrize(("reset", "expected"), [(False, 2000), (True, 2001)])
def test_newest_of_a_long_chain_is_its_head(reset: bool, expected: int) -> None:
    """2,000 chained pushes, newest first, with ever later pushed_at going back: the chain still wins.

    With a reset back and forth at the top, the whole chain hangs off a cycle and is searched in depth.
    """
    length = 2000
    jobs = [make_job(n, before=n - 1, after=n, pushed_at=length - n) for n in range(length, 0, -1)]
    if reset:
        jobs.insert(0, make_job(length + 1, before=length, after=length - 1, pushed_at=0))
    assert newest(jobs).id == expected


_FINISHED = (JobState.DONE, JobState.SUPERSEDED, JobState.FAILED, JobState.DEAD)


@st.composite
def lanes_with_states(draw: st.DrawFn) -> list[Job]:
    """Generated lanes whose jobs are in any state, some active, some with cancel_wanted."""
    jobs = draw(lanes())
    return [
        replace(
            job,
            state=draw(st.sampled_from(list(JobState))),
            cancel_wanted=draw(st.booleans()),
            due_at=draw(st.sampled_from([0.0, 20.0])),
        )
        for job in jobs
    ]


@settings(max_examples=300, deadline=None)
@given(jobs=lanes_with_states())
def test_plan_from_links_of_finished_jobs_matches_the_plan_from_whole_jobs(jobs: list[Job]) -> None:
    """The worker reads finished jobs as links only (``Store.lane_snapshot``): the plan is the same."""
    whole = [job for job in jobs if job.state not in _FINISHED or job.cancel_wanted]
    links = [
        Link(j.id, j.before, j.after, j.pushed_at)
        for j in jobs
        if j.state in _FINISHED and not j.cancel_wanted
    ]
    assert plan_lane(whole, now=10, history=links) == plan_lane(jobs, now=10)


def test_a_finished_push_newer_than_every_waiting_one_supersedes_them_as_a_link() -> None:
    """History alone can make the waiting jobs old: a late delivery under a finished newer push."""
    late = make_job(2, before=0, after=1)
    plan = plan_lane([late], now=10, history=[Link(1, sha(1), sha(2), None)])
    assert plan.create is None
    assert plan.supersede == (2,)


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Job], list[Job]]:
    """A lane in any state, and pushes arriving after it (queued, later ids, some debounced)."""
    lane = draw(lanes_with_states())
    commit = st.integers(0, 7)
    pushes = draw(st.lists(st.tuples(commit, commit, st.none() | st.integers(0, 3)), max_size=12))
    arriving = [
        make_job(
            100 + n,
            before=before,
            after=after,
            pushed_at=pushed_at,
            due_at=draw(st.sampled_from([0.0, 20.0])),
        )
        for n, (before, after, pushed_at) in enumerate(pushes)
    ]
    return lane, arriving


@settings(max_examples=500, deadline=None)
@given(case=arrivals())
def test_superseding_on_arrival_only_does_what_the_plan_would_do(case: tuple[list[Job], list[Job]]) -> None:
    """Pushes stored one by one, each replacing what ``superseded_on_arrival`` names: the worker's plan
    afterwards is the plan over the same pushes stored plainly, minus the jobs already replaced."""
    lane, arriving = case
    plain = plan_lane([*lane, *arriving], now=10)
    stored = list(lane)
    replaced: set[int] = set()
    for new in arriving:
        gone = set(superseded_on_arrival(new, stored))
        replaced |= gone
        stored = [replace(job, state=JobState.SUPERSEDED) if job.id in gone else job for job in stored]
        stored.append(new)
    assert replaced <= set(plain.supersede)
    assert plan_lane(stored, now=10) == replace(
        plain, supersede=tuple(job_id for job_id in plain.supersede if job_id not in replaced)
    )


def test_a_push_replaces_the_queued_push_it_follows_on_arrival() -> None:
    first = make_job(1, before=0, after=1)
    other = make_job(2, before=5, after=6)
    assert superseded_on_arrival(make_job(3, before=1, after=2), [first, other]) == [1]
    assert superseded_on_arrival(make_job(3, before=6, after=7), [first, other]) == [2]
    assert (
        superseded_on_arrival(make_job(3, before=2, after=3), [first, other]) == []
    )  # a gap: the plan decides


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        (make_job(1, before=0, after=1, state=JobState.CREATING), []),  # its create may have happened
        (active(make_job(1, before=0, after=1), "inv-1"), []),  # the worker cancels invocations
        (make_job(1, before=0, after=1, pushed_at=9), []),  # pushed later than the new push
        (make_job(4, before=0, after=1), []),  # stored after it
        (make_job(1, before=0, after=1, pushed_at=5), [1]),
    ],
)
def test_only_older_queued_pushes_are_replaced_on_arrival(queued: Job, expected: list[int]) -> None:
    assert superseded_on_arrival(make_job(3, before=1, after=2, pushed_at=5), [queued]) == expected
