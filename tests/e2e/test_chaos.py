"""Chaos: hundreds of pushes through a real `bridge serve` that is SIGKILLed mid-run, against a faulty Sync.

The emulator (its own process) answers 5xx and 429s, drops connections before and after committing, and
holds answers past the bridge's timeout (unknown outcomes), at a background rate. Pushes chain per branch
(before -> after) over 30 branches of three repositories (and a second route for some); some are
delivered twice, some out of order, some only after a crash (GitHub's redelivery, same GUID). The bridge
is killed four times: twice while create calls are held past its timeout, every time while a burst of
deliveries is on the wire. Then it converges, and the emulator's invocations and the bridge's store must
show that nothing accepted was lost, no commit was indexed twice, every branch's newest push is indexed,
every superseded invocation was cancelled, and no late delivery created or cancelled anything.

Two focused siblings pin down bugs found while writing it: a create that outlives the lane lease must
not be repeated, and a restarted single replica must resume its dead predecessor's lanes at once.

Replay a failure with ``CHAOS_SEED=<seed>``. The figures are printed as one ``CHAOS {...}`` line (shown
with ``pytest -s`` or ``-rA``) and written to ``chaos-summary.json`` in the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.samples import ZERO, fake_sha
from tests.e2e.procs import Bridge, Emulator, bridge_env, emulator_process, query_store, send_push, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = int(os.environ.get("CHAOS_SEED", "20261123"))
PUSHES = 400
BRANCHES = {"acme/api": 12, "acme/web": 10, "acme/cli": 8}
KILLS = 4
IN_FLIGHT_KILLS = 2  # kills made while create calls are held past the bridge's timeout
SYNC_TIMEOUT = 1.5
LEASE = 4.0  # more than a lookup plus a create at the timeout
HOLD = 3.0  # seconds the in-flight-kill fault holds a committed create's answer
CONVERGE = 45.0


def fault(operation: str, kind: str, probability: float, **extra: Any) -> dict[str, Any]:
    """A fault rule that fires, for ever, on that share of the operation's requests."""
    return {"operation": operation, "kind": kind, "probability": probability, "times": -1, **extra}


#: The background fault rate.
BACKGROUND_FAULTS = [
    fault("create_invocation", "status", 0.08, status=503),
    fault("create_invocation", "status", 0.05, status=429, retry_after=0.3),
    fault("create_invocation", "status", 0.04, status=500),
    fault("create_invocation", "drop", 0.03),
    fault("create_invocation", "drop_after_commit", 0.06),
    fault("create_invocation", "delay_after_commit", 0.04, seconds=2.0),  # past the timeout: unknown
    fault("create_invocation", "delay", 0.05, seconds=0.3),
    fault("list_invocations", "status", 0.05, status=500),
    fault("list_invocations", "drop", 0.03),
    fault("cancel_invocation", "status", 0.08, status=503),
    fault("cancel_invocation", "status", 0.04, status=429, retry_after=0.2),
    fault("cancel_invocation", "drop_after_commit", 0.05),
    fault("get_invocation", "status", 0.1, status=500),
    fault("get_invocation", "drop", 0.03),
]


@dataclass
class Push:
    """One push to one branch, and what became of its deliveries."""

    repository: str
    branch: str
    index: int  # position in the branch's chain
    before: str
    after: str
    guid: str
    pushed_at: int
    answers: list[str] = field(default_factory=list)  # "accepted", "duplicate" or "error:<exception>"
    first_ok: int = 0  # send sequence number of the first 202 (accepted or duplicate); 0: none yet

    @property
    def stored(self) -> bool:
        """Whether the bridge answered 202, so the delivery must be durable."""
        return self.first_ok > 0

    @property
    def branch_key(self) -> tuple[str, str]:
        return self.repository, self.branch

    def first_answer(self) -> str | None:
        """The first 202 status, attempts that got no answer skipped."""
        return next((a for a in self.answers if not a.startswith("error")), None)


def routes_for(sources: dict[str, str], mirror: str) -> str:
    lines = ["routes:"]
    for repository, source_id in sources.items():
        lines += [f"  - repository: {repository}", '    branches: ["**"]', f"    source_id: {source_id}"]
    lines += [  # a second route: acme/api's release branches are also indexed into a mirror source
        "  - repository: acme/api",
        '    branches: ["release/*"]',
        f"    source_id: {mirror}",
        '    collection: "mirror-{branch}-{sha12}"',
    ]
    return "\n".join(lines) + "\n"


def sources_of(push: Push, sources: dict[str, str], mirror: str) -> list[str]:
    """The sources a push is indexed into: one invocation per matching route."""
    extra = [mirror] if push.repository == "acme/api" and push.branch.startswith("release/") else []
    return [sources[push.repository], *extra]


def plan_pushes(rng: random.Random) -> tuple[list[Push], int]:
    """Chained pushes over every branch, interleaved, a third of the branches with one pair swapped.

    Returns the send order and the number of swapped pairs.
    """
    branches = [
        (repository, name)
        for repository, count in BRANCHES.items()
        for name in ["main", "release/1.0", "release/2.0", *(f"feature/f{i}" for i in range(count - 3))]
    ]
    chains: dict[tuple[str, str], list[Push]] = {key: [] for key in branches}
    for n in range(PUSHES):
        key = branches[n] if n < len(branches) else rng.choice(branches)
        chain = chains[key]
        after = fake_sha(f"chaos:{SEED}:{key}:{len(chain)}")
        before = chain[-1].after if chain else ZERO
        chain.append(Push(*key, len(chain), before, after, f"chaos-{SEED}-{n}", 1_800_000_000 + n))
    order = sorted((push for chain in chains.values() for push in chain), key=lambda p: p.pushed_at)
    swapped = 0
    for key in rng.sample(branches, len(branches) // 3):
        chain = chains[key]
        if len(chain) >= 3:
            k = rng.choice([len(chain) - 2, rng.randrange(1, len(chain) - 1)])  # often the newest pair
            i, j = order.index(chain[k]), order.index(chain[k + 1])
            order[i], order[j] = order[j], order[i]
            swapped += 1
    return order, swapped


class Chaos:
    """Drives the run: sends, redelivers, crashes and restarts, and keeps the figures."""

    def __init__(self, bridge: Bridge, emulator: Emulator, rng: random.Random) -> None:
        self.bridge = bridge
        self.emulator = emulator
        self.rng = rng
        self.client = httpx.Client(timeout=10)
        self.lock = threading.Lock()
        self.seq = 0
        self.sent = 0
        self.redeliveries = 0
        self.crashes = 0
        self.creates_in_flight_at_kills: list[int] = []
        self.cut_by_kills = 0  # deliveries sent in the moment of a kill that got no answer
        self.deferred: list[Push] = []
        self.bad_answers: list[str] = []  # anything but 202 accepted/duplicate, or a connection error
        self.accepted_twice: list[str] = []  # GUIDs answered "accepted" again: a redelivery not detected

    def send(self, push: Push, client: httpx.Client | None = None) -> str:
        try:
            response = send_push(
                self.bridge.url, client=client or self.client, delivery=push.guid, repository=push.repository,
                branch=push.branch, before=push.before, after=push.after, pushed_at=push.pushed_at,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            answer = f"error:{type(exc).__name__}"
        else:
            answer = str(response.json().get("status")) if response.status_code == 202 else ""
            if answer not in ("accepted", "duplicate"):
                self.bad_answers.append(f"{push.guid}: {response.status_code} {response.text[:200]}")
        with self.lock:
            self.seq += 1
            self.sent += 1
            if answer == "accepted" and "accepted" in push.answers:
                self.accepted_twice.append(push.guid)
            push.answers.append(answer)
            if answer in ("accepted", "duplicate") and not push.first_ok:
                push.first_ok = self.seq
        return answer

    def deliver(self, push: Push) -> None:
        """Send a push; now and then redeliver it at once (GitHub's redeliver button, same GUID)."""
        if self.send(push).startswith("error"):
            self.deferred.append(push)
        elif self.rng.random() < 0.08:
            self.redeliveries += 1
            self.send(push)

    def redeliver_some(self) -> None:
        """A failed delivery comes again some time later, out of order with newer pushes."""
        if self.deferred and self.rng.random() < 0.3:
            self.deliver(self.deferred.pop(self.rng.randrange(len(self.deferred))))

    def crash(self, queue: deque[Push], *, hold_creates: bool) -> None:
        """SIGKILL the bridge while deliveries (and, if asked, create calls) are in flight; restart it."""
        if hold_creates:
            before = self.emulator.requests("create_invocation")
            rule = {"operation": "create_invocation", "kind": "delay_after_commit", "seconds": HOLD}
            self.emulator.faults([{**rule, "times": 12}])
            for _ in range(6):
                if queue:
                    self.deliver(queue.popleft())
            wait_until(lambda: self.emulator.requests("create_invocation") > before, timeout=5, interval=0.01)
            self.creates_in_flight_at_kills.append(self.emulator.requests("create_invocation") - before)
        burst = [queue.popleft() for _ in range(min(len(queue), self.rng.randint(3, 8)))]
        pause = self.rng.uniform(0.005, 0.08)

        def send_burst() -> None:
            with httpx.Client(timeout=10) as client:
                for push in burst:
                    if self.send(push, client).startswith("error"):
                        with self.lock:
                            self.deferred.append(push)

        sender = threading.Thread(target=send_burst)
        sender.start()
        time.sleep(pause)
        self.bridge.kill()
        sender.join(30)
        self.crashes += 1
        self.cut_by_kills += sum(1 for p in burst if p.answers[-1].startswith("error"))
        self.client.close()
        self.client = httpx.Client(timeout=10)
        self.bridge.start()
        for push in list(self.deferred):  # half come back right after the restart, half much later
            if self.rng.random() < 0.5:
                self.deferred.remove(push)
                self.deliver(push)

    def finish_deliveries(self, pushes: list[Push]) -> None:
        """Redeliver every push never answered 202, then redeliver a few answered ones late."""
        for _ in range(20):
            missing = [p for p in pushes if not p.stored]
            if not missing:
                break
            for push in missing:
                self.deliver(push)
        for push in self.rng.sample(pushes, len(pushes) // 20):
            self.redeliveries += 1
            self.send(push)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[Bridge, Emulator, dict[str, str], str]]:
    with emulator_process(tmp_path) as emulator:
        emulator.configure(pending_seconds=120)  # nothing starts by itself: every cancel is observable
        sources = {repository: emulator.add_source(repository) for repository in BRANCHES}
        mirror = emulator.add_source("acme/api", database_name="mirror")
        env = bridge_env(
            tmp_path,
            sync_url=emulator.url,
            routes=routes_for(sources, mirror),
            BRIDGE_SYNC_TIMEOUT=str(SYNC_TIMEOUT),
            BRIDGE_LEASE_SECONDS=str(LEASE),
            BRIDGE_POLL_INTERVAL_SECONDS="0.1",
            BRIDGE_RETRY_BASE_SECONDS="0.1",
            BRIDGE_RETRY_CAP_SECONDS="1",
            BRIDGE_TRACK_MIN_SECONDS="0.5",
            BRIDGE_TRACK_MAX_SECONDS="2",
            BRIDGE_SHUTDOWN_TIMEOUT="2",
        )
        bridge = Bridge(env=env, tmp=tmp_path)
        bridge.start()
        try:
            yield bridge, emulator, sources, mirror
        finally:
            if bridge.proc is not None and bridge.proc.poll() is None:
                bridge.kill()


def test_chaos_loses_nothing_indexes_nothing_twice_and_the_newest_push_wins(
    rig: tuple[Bridge, Emulator, dict[str, str], str], tmp_path: Path
) -> None:
    """Hundreds of chained pushes, redeliveries, reorderings, Sync faults and SIGKILLs converge correctly."""
    bridge, emulator, sources, mirror = rig
    started = time.monotonic()
    rng = random.Random(SEED)
    pushes, swapped = plan_pushes(rng)
    emulator.faults(BACKGROUND_FAULTS)
    chaos = Chaos(bridge, emulator, rng)
    queue = deque(pushes)
    kill_at = sorted(rng.sample(range(30, PUSHES - 30), KILLS))
    holding = set(rng.sample(kill_at, IN_FLIGHT_KILLS))
    try:
        while queue:
            if kill_at and PUSHES - len(queue) >= kill_at[0]:
                chaos.crash(queue, hold_creates=kill_at.pop(0) in holding)
            else:
                chaos.deliver(queue.popleft())
                chaos.redeliver_some()
        chaos.finish_deliveries(pushes)
    finally:
        chaos.client.close()
    sending = time.monotonic() - started

    db = tmp_path / "bridge.db"
    newest: dict[tuple[str, str], Push] = {}
    for push in pushes:
        if push.branch_key not in newest or push.index > newest[push.branch_key].index:
            newest[push.branch_key] = push
    wanted = {(source, p.after) for p in newest.values() for source in sources_of(p, sources, mirror)}

    def converged() -> bool:
        waiting = "SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'creating') OR cancel_wanted"
        if query_store(db, waiting)[0][0]:
            return False
        return wanted <= {(i["source_id"], i["sha"]) for i in emulator.invocations()}

    try:
        wait_until(converged, timeout=CONVERGE, interval=0.25)
        timed_out = False
    except TimeoutError:
        timed_out = True
    converging = time.monotonic() - started - sending

    state = emulator.state()
    invocations: list[dict[str, Any]] = state["invocations"]
    deliveries = {row[0] for row in query_store(db, "SELECT delivery_id FROM deliveries WHERE hook_id = '1'")}
    jobs_per_delivery = Counter(row[0] for row in query_store(db, "SELECT delivery_id FROM jobs"))
    jobs_per_invocation = Counter(
        row[0] for row in query_store(db, "SELECT invocation_id FROM jobs") if row[0]
    )
    job_states = Counter(row[0] for row in query_store(db, "SELECT state FROM jobs"))

    # Accepted means durable: every push answered 202 has its delivery and all its jobs in the store.
    losses = [
        p.guid
        for p in pushes
        if p.stored
        and (p.guid not in deliveries or jobs_per_delivery[p.guid] < len(sources_of(p, sources, mirror)))
    ]
    # Exactly once: at most one invocation per source and collection, each owned by exactly one job.
    per_collection = Counter((i["source_id"], i["collection"]) for i in invocations)
    duplicates = sorted(f"{source}/{name} x{n}" for (source, name), n in per_collection.items() if n > 1)
    unowned = [i["id"] for i in invocations if jobs_per_invocation[i["id"]] != 1]
    # Newest wins: every branch's newest push is indexed, and no other invocation is left pending.
    status = {(i["source_id"], i["sha"]): i["status"] for i in invocations}
    not_indexed = sorted(
        f"{source}@{sha[:12]}:{status.get((source, sha), 'missing')}"
        for source, sha in wanted
        if status.get((source, sha)) not in ("pending", "processing", "complete")
    )
    stale_pending = [
        i["id"] for i in invocations if i["status"] == "pending" and (i["source_id"], i["sha"]) not in wanted
    ]
    # A late delivery (stored after a newer push of its branch was) creates nothing, so cancels nothing.
    late = [
        p
        for p in pushes
        if p.first_answer() == "accepted"  # stored by the attempt that said so, not by an unanswered one
        and any(
            q.branch_key == p.branch_key and q.index > p.index and 0 < q.first_ok < p.first_ok for q in pushes
        )
    ]
    late_indexed = [p.guid for p in late if any(i["sha"] == p.after for i in invocations)]

    summary = {
        "seed": SEED,
        "pushes": len(pushes),
        "branches": len(newest),
        "deliveries_sent": chaos.sent,
        "accepted": sum("accepted" in p.answers for p in pushes),
        "stored": sum(p.stored for p in pushes),
        "duplicate_answers": sum(a == "duplicate" for p in pushes for a in p.answers),
        "redeliveries_sent": chaos.redeliveries,
        "unanswered_around_crashes": dict(
            Counter(a[6:] for p in pushes for a in p.answers if a.startswith("error"))
        ),
        "cut_by_kills": chaos.cut_by_kills,
        "stored_but_unanswered": sum(p.first_answer() == "duplicate" for p in pushes),
        "out_of_order_pairs": swapped,
        "late_deliveries": len(late),
        "crashes": chaos.crashes,
        "creates_in_flight_at_kills": chaos.creates_in_flight_at_kills,
        "faults_fired": sum(state["faults_fired"].values()),
        "faults_fired_by_kind": dict(sorted(state["faults_fired"].items())),
        "sync_requests": state["counters"],
        "invocations": len(invocations),
        "invocation_status": dict(Counter(i["status"] for i in invocations)),
        "job_states": dict(job_states),
        "losses": len(losses),
        "duplicate_invocations": len(duplicates),
        "unowned_invocations": len(unowned),
        "newest_not_indexed": len(not_indexed),
        "stale_pending": len(stale_pending),
        "late_indexed": len(late_indexed),
        "accepted_twice": len(chaos.accepted_twice),
        "bad_answers": len(chaos.bad_answers),
        "timed_out": timed_out,
        "seconds": {"sending": round(sending, 1), "converging": round(converging, 1)},
    }
    (tmp_path / "chaos-summary.json").write_text(json.dumps(summary, indent=2))
    print("\nCHAOS " + json.dumps(summary))
    assert not chaos.bad_answers, f"answers other than 202 accepted/duplicate: {chaos.bad_answers}"
    assert not losses, f"accepted deliveries lost: {losses}"
    assert not chaos.accepted_twice, f"redeliveries accepted again: {chaos.accepted_twice}"
    assert not duplicates, f"collections with several invocations: {duplicates}"
    assert not unowned, f"invocations not owned by exactly one job: {unowned}"
    assert not not_indexed, f"newest pushes not indexed: {not_indexed}"
    assert not stale_pending, f"superseded invocations still pending: {stale_pending}"
    assert not late_indexed, f"late deliveries that were indexed: {late_indexed}"
    assert not timed_out, f"no convergence within {CONVERGE}s (seed {SEED}); see {bridge.log_path}"
    assert set(job_states) <= {"active", "done", "superseded"}, job_states


def test_a_create_that_outlives_the_lane_lease_is_not_repeated(tmp_path: Path) -> None:
    """Slow source resolution plus a slow create outlive the lease: the lane is still worked once.

    The settings keep the defaults' ratio (BRIDGE_SYNC_TIMEOUT half of BRIDGE_LEASE_SECONDS) and each call
    stays within its timeout; a described source costs two calls before the create.
    """
    with emulator_process(tmp_path) as emulator:
        emulator.configure(pending_seconds=60)
        routes = (
            'routes:\n  - repository: "acme/*"\n    branches: ["**"]\n    source: {database_name: code}\n'
        )
        env = bridge_env(
            tmp_path,
            sync_url=emulator.url,
            routes=routes,
            BRIDGE_SYNC_TIMEOUT="1",
            BRIDGE_LEASE_SECONDS="2",
            BRIDGE_POLL_INTERVAL_SECONDS="0.1",
        )
        slow = ["list_sources", "create_source", "create_invocation"]
        emulator.faults([{"operation": op, "kind": "delay", "seconds": 0.9, "times": -1} for op in slow])
        bridge = Bridge(env=env, tmp=tmp_path)
        bridge.start()
        try:
            sha = fake_sha("outlives-the-lease")
            assert send_push(bridge.url, repository="acme/api", branch="main", after=sha).status_code == 202
            wait_until(lambda: any(i["sha"] == sha for i in emulator.invocations()), timeout=10)
            time.sleep(1.5)  # a second holder's create would have landed by now
            created = [i["id"] for i in emulator.invocations() if i["sha"] == sha]
            assert len(created) == 1, f"{len(created)} invocations of one commit: {created}"
        finally:
            bridge.kill()


def test_a_restarted_bridge_resumes_at_once_the_lanes_a_killed_one_held(tmp_path: Path) -> None:
    """The only replica on a SQLite file, restarted after a SIGKILL, works its predecessor's lanes at once."""
    with emulator_process(tmp_path) as emulator:
        emulator.configure(pending_seconds=60)
        source = emulator.add_source("acme/api")
        routes = f'routes:\n  - repository: "acme/*"\n    branches: ["**"]\n    source_id: {source}\n'
        env = bridge_env(tmp_path, sync_url=emulator.url, routes=routes, BRIDGE_LEASE_SECONDS="60")
        emulator.faults([{"operation": "create_invocation", "kind": "delay_after_commit", "seconds": 10}])
        bridge = Bridge(env=env, tmp=tmp_path)
        bridge.start()
        try:
            sha = fake_sha("held-by-the-dead")
            assert send_push(bridge.url, repository="acme/api", branch="main", after=sha).status_code == 202
            wait_until(lambda: len(emulator.invocations()) == 1, timeout=10)  # created; the answer is held
            bridge.kill()
            bridge.start()
            active = "SELECT COUNT(*) FROM jobs WHERE state = 'active'"
            wait_until(lambda: query_store(tmp_path / "bridge.db", active) == [(1,)], timeout=5)
            assert len(emulator.invocations()) == 1  # adopted, not created again
        finally:
            bridge.kill()
