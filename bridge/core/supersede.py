"""Newest wins: decide, for one lane (one route's source and branch), what the worker does next.

Which push is newest? GitHub gives no reliable order: deliveries arrive late, twice, out of order.
Pushes to one branch chain instead: a push's ``before`` is the ``after`` of the push it followed
(force pushes included: ``before`` is always the ref's previous value). So push P is older than Q
when Q's chain of predecessors reaches P. Where the chain is broken (a delivery never came, or a
cycle from a branch reset back and forth), ``repository.pushed_at`` and then arrival order decide.

The plan never cancels or supersedes the newest push, so a late delivery of an old push changes
nothing but its own job.

Most replacing happens earlier, as a push is stored (:func:`superseded_on_arrival`): a new push whose
``before`` is a queued push's ``after`` replaces that push at once, when no worker holds the lane. The
plan would supersede it anyway (the rule's docstring says why), so the worker only sees the newest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from bridge.core.jobs import WAITING_STATES, InvocationStatus, Job, JobState


class Linked(Protocol):
    """A push as the chain sees it: a :class:`Job`, or a :class:`Link` of a finished one."""

    @property
    def id(self) -> int: ...
    @property
    def before(self) -> str: ...
    @property
    def after(self) -> str: ...
    @property
    def pushed_at(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Link:
    """A finished job of the lane (done, superseded, failed, dead), reduced to what orders pushes.

    The lane's history only decides which push is newest, so the worker reads these four columns of it
    instead of whole jobs (the lane read was the SQLite writer's largest cost; ``bench/HISTORY.md``).
    """

    id: int
    before: str
    after: str
    pushed_at: int | None


P = TypeVar("P", bound=Linked)


@dataclass(frozen=True, slots=True)
class LanePlan:
    """What to do in a lane now; every id is a job id of the lane."""

    create: int | None = None  # create (or, if CREATING, resume) this job's invocation
    supersede: tuple[int, ...] = ()  # queued jobs a newer push replaced: no Sync call at all
    orphans: tuple[int, ...] = ()  # replaced jobs whose create call may have happened: look up first
    duplicate: int | None = None  # the newest push is already in flight in this lane under that name
    wait_until: float | None = None  # the newest job is not due before this time
    cancel: tuple[int, ...] = ()  # superseded invocations to cancel now


def _heads(jobs: Sequence[Linked]) -> set[int]:
    """Ids of the chain heads: the pushes no other push descends from, unless they descend from it too.

    See commits as nodes and each push as an edge from its ``after`` to its ``before``: a push descends
    from the pushes its edge leads on to. A push that no push started from (no edge enters its ``after``)
    is a head. Any other push has a descendant, so it is a head only if it descends from all of them: its
    edge lies in a strongly connected component (a cycle: a branch reset back and forth, or ``before ==
    after``) that no edge enters from outside. No such component is reachable from a commit no push
    started from, so only the commits those do not reach, usually none, need searching. There is always a
    head: some component is entered by no other, and each of its commits some push inside it started from.
    Job ids are taken as distinct (they are the store's keys).
    """
    starts = {job.before for job in jobs}
    parents: dict[str, list[str]] = {}
    for job in jobs:
        parents.setdefault(job.after, []).append(job.before)
    heads = {job.id for job in jobs if job.after not in starts}
    todo = [sha for sha in parents if sha not in starts]
    reached = set(todo)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in reached:
                reached.add(parent)
                todo.append(parent)
    node = {sha: index for index, sha in enumerate(sha for sha in parents if sha not in reached)}
    if not node:
        return heads
    edges = [[node[parent] for parent in parents[sha] if parent in node] for sha in node]
    component = _components(edges)
    entered = [False] * len(edges)  # by component
    for source, targets in enumerate(edges):
        for target in targets:
            if component[target] != component[source]:
                entered[component[target]] = True
    for job in jobs:
        if job.after in node and job.before in node:
            inside = component[node[job.after]]
            if inside == component[node[job.before]] and not entered[inside]:
                heads.add(job.id)
    return heads


def _components(edges: list[list[int]]) -> list[int]:
    """The strongly connected component of each node: Tarjan's algorithm, iterative (lanes can be long).

    Hand-written: the standard library has none (``graphlib`` only orders acyclic graphs), and a graph
    library would be a large dependency for these lines; ``tests/core/test_supersede.py`` checks the
    result against the plain quadratic definition on generated lanes.
    """
    order = [-1] * len(edges)  # when the search found each node; -1 until it does
    low = [0] * len(edges)  # the earliest found node, still on the stack, that the node's subtree reaches
    component = [-1] * len(edges)  # -1 while the node is unfound or still on the stack
    stack: list[int] = []
    count = found = 0
    for root in range(len(edges)):
        if order[root] != -1:
            continue
        order[root] = low[root] = count
        count += 1
        stack.append(root)
        path = [(root, iter(edges[root]))]  # the search's current path, each node with its edges left
        while path:
            current, targets = path[-1]
            for target in targets:
                if order[target] == -1:
                    order[target] = low[target] = count
                    count += 1
                    stack.append(target)
                    path.append((target, iter(edges[target])))
                    break
                if component[target] == -1:  # on the stack: in the component of a node on the path
                    low[current] = min(low[current], order[target])
            else:
                path.pop()
                if path:
                    parent = path[-1][0]
                    low[parent] = min(low[parent], low[current])
                if low[current] == order[current]:
                    while True:
                        member = stack.pop()
                        component[member] = found
                        if member == current:
                            break
                    found += 1
    return component


def newest(jobs: Sequence[P]) -> P:
    """The newest push among ``jobs`` (non-empty): a chain head, then latest ``pushed_at``, then id."""
    heads = _heads(jobs)
    return max((job for job in jobs if job.id in heads), key=lambda job: (job.pushed_at or 0, job.id))


def plan_lane(jobs: Sequence[Job], *, now: float, history: Sequence[Link] = ()) -> LanePlan:
    """Decide the next step for a lane from its jobs (waiting, active, ``cancel_wanted``, and any
    others), and ``history``: recent finished jobs, which take part only in deciding the newest push."""
    if not jobs and not history:
        return LanePlan()
    pushes: list[Linked] = [*jobs, *history]
    head = newest(pushes)
    older_waiting = [j for j in jobs if j.state in WAITING_STATES and j.id != head.id]
    cancel = tuple(j.id for j in jobs if j.cancel_wanted and j.due_at <= now and j.id != head.id)
    plan = LanePlan(
        supersede=tuple(j.id for j in older_waiting if j.state is JobState.QUEUED),
        orphans=tuple(j.id for j in older_waiting if j.state is JobState.CREATING),
        cancel=cancel,
    )
    if not isinstance(head, Job) or head.state not in WAITING_STATES:  # a Link: a finished push
        return plan
    in_flight = any(
        j.state is JobState.ACTIVE and j.collection == head.collection and j.id != head.id for j in jobs
    )
    if in_flight and head.state is JobState.QUEUED:
        return replace(plan, duplicate=head.id)
    if head.due_at > now:
        return replace(plan, wait_until=head.due_at)
    return replace(plan, create=head.id)


def superseded_on_arrival(new: Linked, lane: Iterable[Job]) -> list[int]:
    """Ids of the queued jobs of ``lane`` that ``new``, a push just stored in that lane, replaces at once.

    The stores apply this rule inside ``accept`` (as SQL: ``supersede_on_arrival`` in ``queries.sql``)
    when no worker holds the lane's lease, so a busy lane keeps one waiting job instead of one per
    push, and the worker reads and supersedes less (``bench/HISTORY.md``, fifth round). A queued job Q
    is replaced when ``new`` directly follows it (``new.before == Q.after``), is stored after it
    (``Q.id < new.id``) and was not pushed earlier (``pushed_at``, missing as 0).

    Why :func:`plan_lane` would supersede Q anyway, whatever else the lane holds or later receives:
    ``new``'s edge enters Q's ``after``, so Q is a chain head only if both lie in one strongly connected
    component that nothing enters (a cycle), and then ``new`` is a head too and wins on (pushed_at, id).
    More pushes only add edges, and that argument holds for any set of edges: whenever Q is a head, so
    is ``new``, which beats it, so Q is never the newest push again. ``creating`` jobs are left alone:
    their create call may have happened, and only the worker may look that up. The property test in
    ``tests/core/test_supersede.py`` checks this against :func:`plan_lane` on generated lanes.
    """
    return [job.id for job in lane if job.state is JobState.QUEUED and replaces(new, job)]


def replaces(new: Linked, queued: Linked) -> bool:
    """Whether ``new`` replaces ``queued`` on arrival, their states aside: it directly follows it, was
    stored after it and was not pushed earlier (see :func:`superseded_on_arrival`)."""
    return (
        queued.after == new.before and queued.id < new.id and (queued.pushed_at or 0) <= (new.pushed_at or 0)
    )


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
