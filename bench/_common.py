"""What the benchmarks share: real processes (emulator, bridge, bare app), signed bodies, wrk runs.

Every benchmark runs the bridge the way production does: ``python -m bridge serve`` (uvicorn, uvloop,
httptools, the worker in its own process by default) on a SQLite file on the project's disk, against
``python -m bridge emulator`` in its own process. Nothing here is imported by ``bridge/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bridge.core.signature import sign
from bridge.samples import encode, fake_sha, push_payload
from tests.e2e.procs import (
    child_pids,
    free_port,
    wait_http,
)  # the process helpers the end-to-end tests use too

ROOT = Path(__file__).resolve().parent.parent
# Where ``python -m bridge`` runs from: another copy of the code (a "before" tree) when BENCH_BRIDGE_SRC
# names one, for before/after comparisons without touching the work tree.
BRIDGE_SRC = Path(os.environ.get("BENCH_BRIDGE_SRC", str(ROOT)))
BENCH = ROOT / "bench"
PYTHON = sys.executable
SECRET = "bench-webhook-secret"
TOKEN = "bench-sync-token"
COMMITS_FOR_7KB = 10  # push_payload(commits=10) encodes to ~6.9 KB
T = TypeVar("T")


def scratch_dir(prefix: str) -> Path:
    """A scratch directory on the project's disk (not a tmpfs): fsync costs what it costs in production."""
    base = BENCH / "results"
    base.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A :func:`scratch_dir`, removed afterwards."""
    folder = scratch_dir(prefix)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []


def _own_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_parts_mb(pid: int) -> tuple[float, float]:
    """Resident memory of a process itself (the bridge's ingress) and of its child processes (the
    bridge's worker process), in MB, read once."""
    return _own_rss_mb(pid), sum(rss_mb(child) for child in child_pids(pid))


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its child processes (the bridge's worker process), in MB."""
    return sum(rss_parts_mb(pid))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_thread(pid: int, read: Callable[[Path], T]) -> dict[str, T]:
    """``read(/proc/PID/task/TID)`` for every thread of a process and of its child processes: keys
    ``main`` (the main thread), ``<comm>-<tid>`` for the others, ``child-<pid>:...`` for children's. A
    thread that ends while it is read is left out."""
    out: dict[str, T] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                comm = (task / "comm").read_text().strip()
                out["main" if task.name == str(pid) else f"{comm}-{task.name}"] = read(task)
    for child in child_pids(pid):
        out.update({f"child-{child}:{k}": v for k, v in _per_thread(child, read).items()})
    return out


def thread_sched(pid: int) -> dict[str, tuple[float, float, int]]:
    """Per thread of a process and of its child processes: seconds on a CPU, seconds runnable but
    waiting for one, and times it was scheduled in (``/proc/PID/task/TID/schedstat``). The wait is what
    a pipeline of threads and processes loses to sharing the CPUs: each hand-off wakes a thread that may
    find both CPUs taken."""

    def read(task: Path) -> tuple[float, float, int]:
        run, wait, slices = (task / "schedstat").read_text().split()
        return int(run) / 1e9, int(wait) / 1e9, int(slices)

    return _per_thread(pid, read)


def cpu_of(sched: dict[str, tuple[float, float, int]]) -> dict[str, float]:
    """The CPU seconds of each thread in a :func:`thread_sched` reading."""
    return {name: run for name, (run, _, _) in sched.items()}


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process and of its child processes."""
    return cpu_of(thread_sched(pid))


def sched_delta(
    before: dict[str, tuple[float, float, int]], after: dict[str, tuple[float, float, int]], seconds: float
) -> dict[str, dict[str, float]]:
    """What each thread busy for over 5 % of ``seconds`` spent between two :func:`thread_sched` readings:
    its CPU (cores), its wait for a CPU (seconds per second) and the mean wait each time it was woken."""
    out: dict[str, dict[str, float]] = {}
    for name, (run, wait, slices) in after.items():
        run0, wait0, slices0 = before.get(name, (0.0, 0.0, 0))
        if run - run0 < 0.05 * seconds:
            continue
        woken = max(1, slices - slices0)
        out[name] = {
            "cpu": round((run - run0) / seconds, 2),
            "wait": round((wait - wait0) / seconds, 2),
            "wait_us_per_wake": round(1e6 * (wait - wait0) / woken),
            "wakes_per_s": round(woken / seconds),
        }
    return out


def machine_ticks() -> list[int]:
    """The first line of ``/proc/stat``: CPU time of the whole machine by kind, in clock ticks."""
    return [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def machine_busy(before: list[int], after: list[int]) -> dict[str, float]:
    """Cores busy (not idle, not waiting for I/O), stolen by the hypervisor, and in I/O wait between two
    :func:`machine_ticks` readings."""
    delta = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(delta) or 1
    cores = os.cpu_count() or 1
    idle, iowait, steal = delta[3], delta[4], delta[7] if len(delta) > 7 else 0
    return {
        "busy": round(cores * (total - idle - iowait) / total, 2),
        "steal": round(cores * steal / total, 2),
        "iowait": round(cores * iowait / total, 2),
    }


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "ram": mem,
        "python": sys.version.split()[0],
        "kernel": os.uname().release,
    }


# ------------------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, *, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def start(
    name: str,
    argv: Sequence[str],
    *,
    health: str,
    port: int,
    folder: Path,
    env: dict[str, str] | None = None,
    cpus: str | None = None,
    src: Path | None = None,
) -> Proc:
    log = folder / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*taskset(cpus), *argv], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=src or BRIDGE_SRC
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + health, proc=proc)
    except BaseException:
        proc.kill()
        raise
    return Proc(name, proc, url, log)


@dataclass
class Emulator:
    proc: Proc

    @property
    def url(self) -> str:
        return self.proc.url

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/_emulator/state", timeout=30).json()
        return data

    def counters(self) -> dict[str, int]:
        return dict(self.state()["counters"])

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_emulator/config", json=changes, timeout=10).raise_for_status()

    def add_source(self, repository: str, database_name: str = "bench") -> str:
        body = {
            "database_name": database_name,
            "embedding_model": "Qwen/Qwen3-Embedding-0.6B",
            "github": {"repository": repository},
        }
        response = httpx.post(
            f"{self.url}/api/v1/sources", json=body, headers={"x-chroma-token": TOKEN}, timeout=10
        )
        response.raise_for_status()
        return str(response.json()["source_id"])

    def invocations(self, source_id: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.state()["invocations"]
        return [i for i in items if source_id is None or i["source_id"] == source_id]


def start_emulator(folder: Path, *, cpus: str | None = None) -> Emulator:
    port = free_port()
    argv = [PYTHON, "-m", "bridge", "emulator", "--port", str(port), "--token", TOKEN]
    return Emulator(start("emulator", argv, health="/_emulator/state", port=port, folder=folder, cpus=cpus))


def bridge_env(folder: Path, *, sync_url: str, routes: str, **extra: str) -> dict[str, str]:
    """Production defaults, except what a benchmark must say (secret, Sync, store, routes, logs)."""
    routes_file = folder / "routes.yaml"
    routes_file.write_text(routes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        BRIDGE_WEBHOOK_SECRET=SECRET,
        BRIDGE_SYNC_URL=sync_url,
        BRIDGE_SYNC_TOKEN=TOKEN,
        BRIDGE_DATABASE_URL=f"sqlite:///{folder / 'bridge.db'}",
        BRIDGE_ROUTES_FILE=str(routes_file),
        BRIDGE_LOG_FORMAT="json",
        BRIDGE_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "info"),
    )
    env.update(extra)
    return env


def start_bridge(
    folder: Path,
    env: dict[str, str],
    *,
    cpus: str | None = None,
    name: str = "bridge",
    src: Path | None = None,
) -> Proc:
    """``bridge serve`` from this tree, or from ``src`` (another copy of the code, for before/after)."""
    port = free_port()
    argv = [PYTHON, "-m", "bridge", "serve", "--port", str(port)]
    # The bridge logs one JSON line per delivery: send them to a file, as a container runtime would.
    return start(name, argv, health="/readyz", port=port, folder=folder, env=env, cpus=cpus, src=src)


def start_bare(folder: Path, *, cpus: str | None = None) -> Proc:
    port = free_port()
    env = dict(os.environ, BENCH_SECRET=SECRET)
    argv = [PYTHON, str(BENCH / "bare_app.py"), "--port", str(port)]
    # The bare endpoint answers 405 to GET on its only path: "answers", so it is up.
    return start("bare", argv, health="/webhooks/github", port=port, folder=folder, env=env, cpus=cpus)


def routes_yaml(source_ids: Sequence[str], *, repositories: Sequence[str]) -> str:
    lines = ["routes:"]
    for repository, source_id in zip(repositories, source_ids, strict=True):
        lines += [f"  - repository: {repository}", "    branches: [main]", f"    source_id: {source_id}"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ deliveries


def signed_headers(body: bytes, *, delivery: str | None = None, event: str = "push") -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/bench",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid1()),  # GitHub's kind: time-based (commit_breakdown.py)
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": sign(body, SECRET.encode()),
    }


def push_bodies(count: int, *, repositories: Sequence[str], commits: int = COMMITS_FOR_7KB) -> list[bytes]:
    """``count`` distinct ~7 KB push bodies, round-robin over ``repositories`` (branch main), each
    repository's pushes chained (``before`` is the previous ``after``), as GitHub sends them; the same
    commits every call."""
    return PushChains(repositories, salt="fixed").next_bodies(count, commits=commits)


class PushChains:
    """Each repository's chain of pushes, continued from one batch of bodies to the next: every body is
    a new push (a new commit whose ``before`` is the previous push's ``after``), so a server that gets
    each batch once sees what GitHub sends, one delivery per push and no push twice.

    Why (eighth round): with one fixed set of bodies, every wrk run after the first, and each lap
    through the set within a run, delivered pushes the bridge had already stored, under new delivery
    ids. Each such replay is an old push in its lane (a job the worker's plan must supersede: a lane
    claim, a lane read and two writes of its own), work GitHub never causes: it redelivers a push
    under its original delivery id, which the bridge answers as a duplicate at once.
    """

    def __init__(self, repositories: Sequence[str], *, salt: str) -> None:
        self._repositories = list(repositories)
        self._heads = dict.fromkeys(self._repositories, "0" * 40)
        self._salt = salt
        self._count = 0

    def next_bodies(self, count: int, *, commits: int = COMMITS_FOR_7KB) -> list[bytes]:
        bodies = []
        for _ in range(count):
            index, self._count = self._count, self._count + 1
            repository = self._repositories[index % len(self._repositories)]
            after = fake_sha(f"bench:{self._salt}:{repository}:{index}")
            payload = push_payload(
                repository=repository,
                repository_id=1000 + index % len(self._repositories),
                before=self._heads[repository],
                after=after,
                commits=commits,
            )
            bodies.append(encode(payload))
            self._heads[repository] = after
        return bodies


def write_wrk_bodies(path: Path, bodies: Sequence[bytes]) -> None:
    """The records ``bench/wrk_push.lua`` reads: ``<signature>\\n<length>\\n<body>`` each."""
    with path.open("wb") as out:
        for body in bodies:
            out.write(sign(body, SECRET.encode()).encode() + b"\n" + str(len(body)).encode() + b"\n" + body)


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    statuses: dict[str, int] = field(default_factory=dict)
    cpu: float = 0.0  # CPU cores the server used during the run
    thread_cpu: dict[str, float] = field(default_factory=dict)
    cpu_us_per_request: float = 0.0  # CPU of every thread of the server and its children, per request
    machine: dict[str, float] = field(default_factory=dict)  # machine_busy over the wrk process's run
    sched: dict[str, dict[str, float]] = field(default_factory=dict)  # sched_delta of the server's threads


def run_wrk(
    url: str,
    bodies_file: Path,
    *,
    run_id: str,
    seconds: float,
    connections: int = 32,
    threads: int = 2,
    cpus: str | None = None,
    stop_after: int = 0,
    partition: bool = False,
) -> WrkResult:
    """wrk with ``bench/wrk_push.lua``: every request a distinct delivery id (a real accept).

    ``partition``: each body is sent by one wrk thread only, the threads taking turns in file order (so
    a file of :class:`PushChains` bodies arrives as its pushes, each once per lap); without, every
    thread goes through all the bodies from its own starting point."""
    argv = [
        *taskset(cpus),
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "wrk_push.lua"),
        f"{url}/webhooks/github",
        "--",
        str(bodies_file),
        run_id,
        str(stop_after),
        "1" if partition else "0",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    statuses = {k: int(v) for k, v in data["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1e3,
        p90_ms=data["p90_us"] / 1e3,
        p99_ms=data["p99_us"] / 1e3,
        max_ms=data["max_us"] / 1e3,
        non_2xx=sum(statuses.values()) - ok,
        socket_errors=int(data["errors"]),
        statuses=statuses,
    )


@dataclass(frozen=True)
class StoreStats:
    """The bridge's own ``bridge_store_*`` histograms (SQLite's group commits and WAL fsyncs), as read
    from its ``/metrics``; ``after.minus(before)`` is what one run added."""

    commits: float
    requests: float
    commit_seconds: float
    syncs: float
    sync_seconds: float
    slow_syncs: float  # fsyncs over 10 ms
    stalled_syncs: float  # fsyncs over 100 ms (each also a store.slow_fsync line in the bridge's log)

    def minus(self, other: StoreStats) -> StoreStats:
        return StoreStats(*(a - b for a, b in zip(vars(self).values(), vars(other).values(), strict=True)))

    def describe(self) -> str:
        if not self.commits:
            return "store: no commits"
        sync_ms = 1e3 * self.sync_seconds / self.syncs if self.syncs else float("nan")
        return (
            f"store: {self.commits:.0f} commits, {self.requests / self.commits:.1f} requests each,"
            f" {1e3 * self.commit_seconds / self.commits:.2f} ms each; {self.syncs:.0f} fsyncs of the WAL,"
            f" {sync_ms:.2f} ms mean, {self.slow_syncs:.0f} over 10 ms, {self.stalled_syncs:.0f} over 100 ms"
        )


def store_stats(url: str) -> StoreStats | None:
    """``StoreStats`` of a running bridge; None if it has no such metrics (an older copy, PostgreSQL)."""
    samples: dict[str, float] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name.startswith("bridge_store_"):
            for sample in family.samples:
                key = sample.name + (f"@{sample.labels['le']}" if "le" in sample.labels else "")
                samples[key] = sample.value
    if "bridge_store_commit_seconds_count" not in samples:
        return None
    syncs = samples.get("bridge_store_sync_seconds_count", 0.0)
    return StoreStats(
        commits=samples["bridge_store_commit_seconds_count"],
        requests=samples.get("bridge_store_commit_requests_sum", 0.0),
        commit_seconds=samples.get("bridge_store_commit_seconds_sum", 0.0),
        syncs=syncs,
        sync_seconds=samples.get("bridge_store_sync_seconds_sum", 0.0),
        slow_syncs=syncs - samples.get("bridge_store_sync_seconds_bucket@0.01", syncs),
        stalled_syncs=syncs - samples.get("bridge_store_sync_seconds_bucket@0.1", syncs),
    )


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
