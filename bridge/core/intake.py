"""From a parsed push to the jobs it creates: the ingress's whole decision, with no I/O.

A push creates nothing when it is a tag, a branch deletion, or matches no route; otherwise one job
per matching route, each with its lane, source and collection name decided here, so the worker
never needs the routes file to act on a stored job.
"""

from __future__ import annotations

from typing import NamedTuple

from bridge.core.events import ZERO_SHA, Push
from bridge.core.jobs import NewJob
from bridge.core.naming import collection_name
from bridge.core.routing import RouteTable


class Intake(NamedTuple):
    """The jobs a push creates, or why it creates none (``ignored`` is then a reason code)."""

    jobs: tuple[NewJob, ...] = ()
    ignored: str | None = None


def lane_key(*, route: str, source_key: str, repository: str, branch: str) -> str:
    """The lane of one route's source, repository and branch (where 'newest wins' is decided).

    The repository is part of it even when the source is named: a glob route with one ``source_id``
    must never let a push to one repository supersede a push to another.
    """
    return f"{route}|{source_key}|{repository.lower()}|{branch}"


def intake(push: Push, routes: RouteTable, *, received_at: float, debounce: float = 0.0) -> Intake:
    """Decide the jobs for ``push``."""
    if push.is_tag:
        return Intake(ignored="tag")
    branch = push.branch
    if branch is None:
        return Intake(ignored="not_a_branch")
    if push.deleted or push.after == ZERO_SHA:
        return Intake(ignored="branch_deleted")
    repo = push.repository
    matched = routes.match(repo.full_name, branch, default_branch=repo.default_branch)
    if not matched:
        return Intake(ignored="no_route")
    jobs = []
    for route in matched:
        source_key = route.source_key(repo.full_name)
        jobs.append(
            NewJob(
                lane=lane_key(
                    route=route.name, source_key=source_key, repository=repo.full_name, branch=branch
                ),
                route=route.name,
                source_key=source_key,
                source_id=route.source_id,
                source_spec=route.source.to_json() if route.source else None,
                repository=repo.full_name,
                repository_id=repo.id,
                branch=branch,
                before=push.before,
                after=push.after,
                pushed_at=push.pushed_at,
                collection=collection_name(
                    route.collection,
                    owner=repo.owner,
                    repo=repo.name,
                    branch=branch,
                    sha=push.after,
                    route=route.name,
                ),
                due_at=received_at + debounce,
            )
        )
    return Intake(jobs=tuple(jobs))
