"""Intake: the jobs a push creates, or why it creates none."""

from __future__ import annotations

import pytest

from bridge.core.events import Push, Repository
from bridge.core.intake import intake, lane_key
from bridge.core.routing import Route, RouteTable, SourceSpec
from tests.factories import sha

SOURCE = "5d6c1f0e-0000-4000-8000-000000000001"
TABLE = RouteTable(
    [
        Route.build(repository="acme/*", branches=("main", "release/*"), source_id=SOURCE, line=2),
        Route.build(repository="acme/api", source=SourceSpec(database_name="code"), line=5),
    ]
)
PUSH = Push(
    repository=Repository(id=7, full_name="acme/api", default_branch="main", private=True),
    ref="refs/heads/main",
    before=sha(0),
    after=sha(1),
    created=False,
    deleted=False,
    forced=False,
    installation_id=1,
    pushed_at=1_700_000_000,
)


def test_each_matching_route_gets_a_job() -> None:
    """A push matching two routes makes two jobs in two lanes, with their own sources and names."""
    jobs = intake(PUSH, TABLE, received_at=100.0).jobs
    assert [j.source_id for j in jobs] == [SOURCE, None]
    assert jobs[1].source_spec == SourceSpec(database_name="code").to_json()
    assert len({j.lane for j in jobs}) == 2
    assert all(sha(1)[:12] in j.collection for j in jobs)
    assert all(
        (j.before, j.after, j.branch, j.pushed_at) == (sha(0), sha(1), "main", 1_700_000_000) for j in jobs
    )


def test_lane_is_route_source_and_branch() -> None:
    """The lane key joins the route, its source and the branch."""
    job = intake(PUSH, TABLE, received_at=0.0).jobs[0]
    assert job.lane == lane_key(
        route=TABLE.routes[0].name, source_key=f"id:{SOURCE}", repository="acme/api", branch="main"
    )


def test_repositories_sharing_a_named_source_get_separate_lanes() -> None:
    """Two repositories matched by one glob route with one source_id never share a lane."""
    other = PUSH._replace(repository=PUSH.repository._replace(full_name="acme/web"))
    first = intake(PUSH, TABLE, received_at=0.0).jobs[0]
    second = intake(other, TABLE, received_at=0.0).jobs[0]
    assert first.lane != second.lane


def test_debounce_sets_the_due_time() -> None:
    """With a debounce, a job is due that long after it was received."""
    assert {j.due_at for j in intake(PUSH, TABLE, received_at=100.0, debounce=2.5).jobs} == {102.5}


@pytest.mark.parametrize(
    ("push", "reason"),
    [
        (PUSH._replace(ref="refs/tags/v1.0"), "tag"),
        (PUSH._replace(ref="refs/pull/1/head"), "not_a_branch"),
        (PUSH._replace(deleted=True, after="0" * 40), "branch_deleted"),
        (PUSH._replace(after="0" * 40), "branch_deleted"),
        (PUSH._replace(ref="refs/heads/feature"), "no_route"),
        (PUSH._replace(repository=PUSH.repository._replace(full_name="other/api")), "no_route"),
    ],
)
def test_pushes_that_index_nothing(push: Push, reason: str) -> None:
    """Tags, other refs, deletions and unrouted pushes create no job, with a reason."""
    decided = intake(push, TABLE, received_at=0.0)
    assert (decided.jobs, decided.ignored) == ((), reason)
