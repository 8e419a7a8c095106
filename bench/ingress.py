"""Ingress throughput and answer latency: the bridge against a bare verify-and-parse endpoint, side by side.

    .venv/bin/python bench/ingress.py                       # the whole comparison, ~3 minutes
    .venv/bin/python bench/ingress.py --runs 3 --seconds 5  # quicker

One run starts, in this order:

* ``bridge emulator`` (the Chroma Sync emulator) in its own process, with one source per repository;
* ``bridge serve``: SQLite (WAL, synchronous=FULL, group commit) in a scratch directory on the
  project's disk, the worker running (in its own process, the default) against the emulator,
  production defaults, one JSON log line per delivery written to a file, routes matching every push
  (``--repos`` repositories, branch ``main``, one source each: so the worker creates, coalesces and
  cancels invocations in ``--repos`` lanes during the run);
* ``bench/bare_app.py``: the bare Litestar endpoint (verify the signature, parse the JSON, 202),
  served exactly like the bridge (uvicorn, uvloop, httptools, one process, access log off).

Then, for each of ``--runs`` rounds, wrk (``-t2 -c32``, ``bench/wrk_push.lua``) hits the bare endpoint
and the bridge for ``--seconds`` each, alternating which goes first, waiting for both servers (and the
emulator) to be idle before each measurement, so the worker's backlog of the previous round never
steals CPU from the next measurement. Every request is a distinct delivery (its own delivery id) of
one of ``--bodies`` distinct ~7 KB signed push bodies, so the bridge does a real accept each time.
Finally the open-loop generator (``bench/loadgen.py``) offers ``--rate`` deliveries per second to
each, ``--rate-runs`` times, for the answer latency at a fixed rate.

Prints a table (medians over the rounds, ratio bridge/bare) and writes it as JSON to
``bench/results/ingress-latest.json``. ``--pin server=1,load=0`` pins the two servers to CPU 1 and
wrk, the load generator and the emulator to CPU 0 (``taskset``); by default nothing is pinned.
``--profile`` records the bridge with py-spy during one extra wrk run (needs ``py-spy`` on PATH or in
``.venv-bench``); with ``--profile-open`` during one extra open-loop run at ``--rate`` instead (where
the 1,000/s answer latency's CPU goes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH,
    ROOT,
    Proc,
    PushChains,
    StoreStats,
    WrkResult,
    bridge_env,
    cpu_of,
    cpu_seconds,
    machine,
    machine_busy,
    machine_ticks,
    median,
    push_bodies,
    routes_yaml,
    rss_mb,
    rss_parts_mb,
    run_wrk,
    sched_delta,
    scratch_dir,
    start_bare,
    start_bridge,
    start_emulator,
    store_stats,
    thread_cpu_seconds,
    thread_sched,
    write_wrk_bodies,
)
from bench.loadgen import OpenLoopResult


def parse_pin(text: str | None) -> dict[str, str]:
    pins: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            role, _, cpus = part.partition("=")
            pins[role.strip()] = cpus.strip()
    return pins


def wait_idle(
    procs: list[Proc], *, threshold: float = 0.05, window: float = 0.5, limit: float = 60.0
) -> float:
    """Wait until every process uses less than ``threshold`` of a CPU over ``window``; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = [cpu_seconds(p.pid) for p in procs]
        time.sleep(window)
        after = [cpu_seconds(p.pid) for p in procs]
        if all((a - b) / window < threshold for a, b in zip(after, before, strict=True)):
            break
    return time.monotonic() - started


def store_counts(db: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        deliveries = connection.execute("SELECT COUNT(*) FROM deliveries").fetchone()[0]
        jobs = dict(connection.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    finally:
        connection.close()
    return {"deliveries": int(deliveries), **{f"jobs_{k}": int(v) for k, v in jobs.items()}}


def py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    candidate = ROOT / ".venv-bench" / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else None


def summarize(results: list[WrkResult]) -> dict[str, float]:
    return {
        "rps": median([r.rps for r in results]),
        "p50_ms": median([r.p50_ms for r in results]),
        "p99_ms": median([r.p99_ms for r in results]),
        "max_ms": median([r.max_ms for r in results]),
        "cpu": median([r.cpu for r in results]),
        "cpu_us_per_request": median([r.cpu_us_per_request for r in results]),
        "machine_busy": median([r.machine.get("busy", float("nan")) for r in results]),
        "cpu_wait": median([sum(t["wait"] for t in r.sched.values()) for r in results]),
        "non_2xx": sum(r.non_2xx for r in results),
        "socket_errors": sum(r.socket_errors for r in results),
    }


def summarize_open(results: list[OpenLoopResult]) -> dict[str, float]:
    return {
        "offered_rps": results[0].offered_rps if results else 0.0,
        "achieved_rps": median([r.achieved_rps for r in results]),
        "p50_ms": median([r.p50_ms for r in results]),
        "p99_ms": median([r.p99_ms for r in results]),
        "p999_ms": median([r.p999_ms for r in results]),
        "max_ms": median([r.max_ms for r in results]),
        "send_lag_p99_ms": median([r.send_lag_p99_ms for r in results]),
        "errors": sum(r.errors for r in results),
    }


def extra_routes(count: int) -> str:
    """``count`` more routes, none matching the benchmark's pushes: exact names (80 %) and globs with a
    literal owner (15 %), a literal name (4 %) or none (1 %, scanned by every lookup), each with its own
    source id (10,000 repositories, 10,000 sources). Start-up must not call Sync for any of them."""
    lines = []
    for i in range(count):
        share = i % 100
        if share < 80:
            repository = f"org{i % 250}/service-{i}"
        elif share < 95:
            repository = f"org{i % 250}/team{i}-*"
        elif share < 99:
            repository = f"*/lib-{i}"
        else:
            repository = f"*/svc{i}-*"
        branches = ["main"] if i % 3 else ["main", "release/*"]
        lines += [
            f'  - repository: "{repository}"',
            f"    branches: {json.dumps(branches)}",
            f"    source_id: {uuid.UUID(int=i + 1)}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="alternating rounds (median reported)")
    parser.add_argument("--seconds", type=float, default=10, help="length of one wrk run")
    parser.add_argument("--warmup", type=float, default=3, help="wrk warm-up per server")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument(
        "--bodies", type=int, default=16384, help="signed push bodies per run (per lap with --replay-bodies)"
    )
    parser.add_argument(
        "--replay-bodies",
        action="store_true",
        help="the load before the eighth round: one set of bodies for every run, each wrk thread going"
        " through all of them (so the bridge gets pushes it already stored, under new delivery ids)",
    )
    parser.add_argument("--repos", type=int, default=50, help="repositories (= lanes) the pushes go to")
    parser.add_argument("--rate", type=float, default=1000, help="open-loop offered rate; 0 skips it")
    parser.add_argument("--rate-seconds", type=float, default=10)
    parser.add_argument("--rate-runs", type=int, default=3)
    parser.add_argument(
        "--routes-scale",
        type=int,
        default=0,
        help="also run a second bridge with this many more routes (e.g. 10000), side by side",
    )
    parser.add_argument("--pin", default=None, help="e.g. server=1,load=0 (taskset CPU lists)")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy SVG of the bridge under wrk")
    parser.add_argument("--profile-gil", action="store_true", help="sample only the thread holding the GIL")
    parser.add_argument("--profile-idle", action="store_true", help="sample idle (waiting) threads too")
    parser.add_argument(
        "--profile-children", action="store_true", help="profile the bridge's child processes too"
    )
    parser.add_argument(
        "--profile-open", action="store_true", help="profile during an open-loop run at --rate, not wrk"
    )
    parser.add_argument(
        "--profile-server", default="bridge", help="which server to profile (e.g. bridge+10000, before)"
    )
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "ingress-latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--env", action="append", default=[], help="extra BRIDGE_X=Y for the bridge")
    parser.add_argument(
        "--before-env",
        action="append",
        default=[],
        help="extra BRIDGE_X=Y for the 'before' server only (with --before .: one tree, two settings)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="another copy of the code (e.g. a git worktree of an older commit), run as a third server"
        " 'before' in the same rounds and open-loop runs: a before/after comparison side by side",
    )
    args = parser.parse_args()
    if args.profile_open and args.rate <= 0:
        parser.error("--profile-open profiles an open-loop run: give it a --rate above 0")
    pins = parse_pin(args.pin)
    server_cpus, load_cpus = pins.get("server"), pins.get("load")

    folder = scratch_dir("ingress-")
    print(f"scratch: {folder}", flush=True)
    emulator = start_emulator(folder, cpus=load_cpus)
    procs: list[Proc] = [emulator.proc]
    startup_calls: dict[str, int] = {}
    try:
        repositories = [f"acme/repo-{k}" for k in range(args.repos)]
        sources = [emulator.add_source(repository) for repository in repositories]
        routes = routes_yaml(sources, repositories=repositories)
        extra = dict(item.split("=", 1) for item in args.env)
        servers: dict[str, Proc] = {}

        def start_copy(
            name: str, routes: str, *, src: Path | None = None, more: dict[str, str] | None = None
        ) -> Proc:
            """``bridge serve`` with ``routes`` in a scratch directory of its own, ``name`` in the log."""
            directory = folder / name
            directory.mkdir()
            env = bridge_env(directory, sync_url=emulator.url, routes=routes, **{**extra, **(more or {})})
            proc = start_bridge(directory, env, cpus=server_cpus, name=name, src=src)
            procs.append(proc)
            return proc

        bridge_dir = folder / "bridge"
        servers["bridge"] = start_copy("bridge", routes)
        scaled = f"bridge+{args.routes_scale}"
        if args.routes_scale:
            scaled_routes = routes + extra_routes(args.routes_scale)
            before_start = sum(emulator.counters().values())
            started = time.perf_counter()
            servers[scaled] = start_copy("scaled", scaled_routes)
            print(
                f"{scaled}: ready in {time.perf_counter() - started:.2f}s, "
                f"RSS {rss_mb(servers[scaled].pid):.0f} MB (bridge: {rss_mb(servers['bridge'].pid):.0f} MB)",
                flush=True,
            )
            time.sleep(2)  # give a misbehaving start-up time to show its Sync calls
            startup_calls = {"sync_calls_at_startup": sum(emulator.counters().values()) - before_start}
            print(
                f"{scaled}: Sync calls during start-up: {startup_calls['sync_calls_at_startup']}", flush=True
            )
        if args.before:
            before_extra = dict(item.split("=", 1) for item in args.before_env)
            servers["before"] = start_copy("before", routes, src=args.before.resolve(), more=before_extra)
        servers["bare"] = start_bare(folder, cpus=server_cpus)
        procs.append(servers["bare"])
        replay_file = folder / "bodies.bin"
        if args.replay_bodies:
            sample = push_bodies(args.bodies, repositories=repositories)
            write_wrk_bodies(replay_file, sample)
        else:  # each run writes its own (bodies_for); these only show the size
            sample = PushChains(repositories, salt="size").next_bodies(len(repositories))
        avg = sum(map(len, sample)) / len(sample)
        kind = "the same bodies every run" if args.replay_bodies else "new pushes every run"
        print(
            f"{args.bodies} bodies per run ({kind}), {avg:.0f} bytes on average; {args.repos} lanes",
            flush=True,
        )
        stamp = int(time.time())
        chains: dict[str, PushChains] = {}

        def bodies_for(name: str) -> Path:
            """The bodies of ``name``'s next run: new pushes continuing its chains (or, with
            --replay-bodies, the one set of bodies every run sends)."""
            if args.replay_bodies:
                return replay_file
            chain = chains.setdefault(name, PushChains(repositories, salt=f"{name}:{stamp}"))
            path = folder / f"bodies-{name}.bin"
            write_wrk_bodies(path, chain.next_bodies(args.bodies))
            return path

        names = [
            "bare",
            "bridge",
            *(["before"] if args.before else []),
            *([scaled] if args.routes_scale else []),
        ]

        # What each bridge run added to its bridge_store_* histograms (None: the server has none).
        store_runs: dict[str, list[dict[str, float] | None]] = {}
        store_open: dict[str, list[dict[str, float] | None]] = {}

        def wrk(name: str, seconds: float, tag: str) -> WrkResult:
            bodies_file = bodies_for(name)
            wait_idle(procs)
            stats_before = None if name == "bare" else store_stats(servers[name].url)
            before = cpu_seconds(servers[name].pid)
            sched_before, ticks_before = thread_sched(servers[name].pid), machine_ticks()
            emulator_before = cpu_seconds(emulator.proc.pid)
            wall_before = time.time()
            result = run_wrk(
                servers[name].url,
                bodies_file,
                partition=not args.replay_bodies,
                run_id=f"{tag}{stamp}",
                seconds=seconds,
                connections=args.connections,
                threads=args.threads,
                cpus=load_cpus,
            )
            result.cpu = (cpu_seconds(servers[name].pid) - before) / result.seconds
            # By the wall clock of the whole wrk process (its start-up parses the bodies file, ~1 s, with
            # no load on the server): how busy the machine was, and how long each busy thread of the
            # server waited for a CPU (thirteenth round).
            wall = time.time() - wall_before
            result.machine = machine_busy(ticks_before, machine_ticks())
            # The emulator stands in for a remote API but shares the two CPUs: its part of the machine.
            result.machine["emulator"] = round((cpu_seconds(emulator.proc.pid) - emulator_before) / wall, 2)
            sched_after = thread_sched(servers[name].pid)
            result.sched = sched_delta(sched_before, sched_after, wall)
            threads_before, threads_after = cpu_of(sched_before), cpu_of(sched_after)
            busy = {
                thread: round((spent - threads_before.get(thread, 0.0)) / result.seconds, 2)
                for thread, spent in threads_after.items()
                if spent - threads_before.get(thread, 0.0) > 0.01 * result.seconds
            }
            result.thread_cpu = busy
            # Every thread of the server and of its child processes: the server's whole CPU per request,
            # steadier from run to run than requests per second (which also moves with what wrk and the
            # emulator take of the two CPUs).
            spent = sum(t - threads_before.get(k, 0.0) for k, t in threads_after.items())
            result.cpu_us_per_request = spent / result.requests * 1e6 if result.requests else 0.0
            print(
                f"  {name:<12} {result.rps:>7.0f} req/s  p50 {result.p50_ms:6.2f} ms"
                f"  p99 {result.p99_ms:6.2f} ms"
                f"  max {result.max_ms:7.2f} ms  cpu {result.cpu:4.2f}  non-2xx {result.non_2xx}"
                f"  errors {result.socket_errors}  {result.cpu_us_per_request:.0f} us CPU/req"
                f"  threads {busy}",
                flush=True,
            )
            print(f"      sched: {_fmt_sched(result.machine, result.sched)}", flush=True)
            store_runs.setdefault(name, []).append(_print_store_stats(servers[name].url, stats_before))
            return result

        print("warm-up", flush=True)
        for name in names:
            wrk(name, args.warmup, f"w{name[:6]}")
        results: dict[str, list[WrkResult]] = {name: [] for name in names}
        for run in range(args.runs):
            print(f"round {run + 1}/{args.runs}", flush=True)
            order = names if run % 2 == 0 else names[::-1]
            for name in order:
                results[name].append(wrk(name, args.seconds, f"r{run}{name[:6]}"))

        open_names = ["bare", "bridge", *(["before"] if args.before else [])]
        open_results: dict[str, list[OpenLoopResult]] = {name: [] for name in open_names}
        open_cpu: dict[str, list[float]] = {}
        if args.rate > 0:
            print(f"open loop at {args.rate:.0f}/s", flush=True)
            for run in range(args.rate_runs):
                for name in open_names if run % 2 == 0 else open_names[::-1]:
                    bodies_file = bodies_for(name)
                    wait_idle(procs)
                    spent = sum(thread_cpu_seconds(servers[name].pid).values())
                    stats_before = None if name == "bare" else store_stats(servers[name].url)
                    result = _open_loop(
                        servers[name].url, bodies_file, args, load_cpus, f"o{run}{name}{stamp}"
                    )
                    spent = sum(thread_cpu_seconds(servers[name].pid).values()) - spent
                    # CPU per delivery at the same offered load: steadier than throughput for an A/B,
                    # as both servers batch alike (the tail after the last answer is included).
                    cpu_us = 1e6 * spent / max(1.0, result.achieved_rps * args.rate_seconds)
                    open_cpu.setdefault(name, []).append(cpu_us)
                    open_results[name].append(result)
                    print(
                        f"  {name:<6} offered {result.offered_rps:.0f}/s achieved {result.achieved_rps:.0f}/s"
                        f"  p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms"
                        f"  p99.9 {result.p999_ms:6.2f} ms  max {result.max_ms:7.2f} ms"
                        f"  {cpu_us:4.0f} us CPU/req  sent late p50 {result.send_lag_p50_ms:.2f}"
                        f" p99 {result.send_lag_p99_ms:.2f} ms"
                        f"  errors {result.errors} {result.error_kinds or ''}",
                        flush=True,
                    )
                    added = _print_store_stats(servers[name].url, stats_before)
                    store_open.setdefault(name, []).append(added)

        if args.profile:
            spy = py_spy()
            if spy is None:
                print("py-spy not found: pip install py-spy into .venv-bench", flush=True)
            else:
                wait_idle(procs)
                profile = subprocess.Popen(
                    [spy, "record", "--pid", str(servers[args.profile_server].pid), "--threads",
                     "--rate", "250",
                     "--duration", str(int(args.rate_seconds if args.profile_open else args.seconds)),
                     "--format", _spy_format(args.profile),
                     "-o", str(args.profile), *(["--gil"] if args.profile_gil else []),
                     *(["--idle"] if args.profile_idle else []),
                     *(["--subprocesses"] if args.profile_children else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )  # fmt: skip
                time.sleep(0.5)
                if args.profile_open:
                    url, bodies = servers[args.profile_server].url, bodies_for(args.profile_server)
                    _open_loop(url, bodies, args, load_cpus, f"p{stamp}")
                else:
                    wrk(args.profile_server, args.seconds, "profile")
                profile.wait(60)
                print(f"profile: {args.profile}", flush=True)

        wait_idle(procs)
        counts = store_counts(bridge_dir / "bridge.db")
        sync_counters = emulator.counters()
        # Each server's own process, and its worker process where it has one (the bridges).
        rss_parts = {name: rss_parts_mb(proc.pid) for name, proc in servers.items()}
        rss = {name: own + children for name, (own, children) in rss_parts.items()}
    finally:
        for proc in reversed(procs):
            proc.stop()

    summaries = {name: summarize(rs) for name, rs in results.items()}
    base = summaries["bare"]["rps"]
    ratio = summaries["bridge"]["rps"] / base if base else float("nan")
    ratios = [b.rps / a.rps for a, b in zip(results["bare"], results["bridge"], strict=True)]
    print()
    print(f"machine: {machine()}")
    print(
        f"pinning: {pins or 'none'}; wrk -t{args.threads} -c{args.connections}, {args.runs} x {args.seconds}s"
    )
    print(
        f"{'':<14}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu':>6}{'us/req':>8}{'non-2xx':>9}"
        f"{'x bare':>8}"
    )
    for name, summary in summaries.items():
        print(
            f"{name:<14}{summary['rps']:>8.0f}{summary['p50_ms']:>9.2f}{summary['p99_ms']:>9.2f}"
            f"{summary['max_ms']:>9.2f}{summary['cpu']:>6.2f}{summary['cpu_us_per_request']:>8.0f}"
            f"{summary['non_2xx']:>9.0f}{summary['rps'] / base if base else float('nan'):>8.2f}"
        )
    print(
        "(cpu: cores of the server's main process; us/req: CPU of all its threads and child processes"
        " per request)"
    )
    print(
        "machine busy (cores, wall clock of wrk) / the server's threads' wait for a CPU (s per s): "
        + ", ".join(f"{n} {s['machine_busy']:.2f} / {s['cpu_wait']:.2f}" for n, s in summaries.items())
    )
    print(f"ratio bridge/bare (of medians): {ratio:.2f}; per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    if args.before:
        earlier = [b.rps / a.rps for a, b in zip(results["bare"], results["before"], strict=True)]
        print(
            f"ratio before/bare (of medians): {summaries['before']['rps'] / base:.2f};"
            f" per round: {', '.join(f'{r:.2f}' for r in earlier)}"
        )
    if args.routes_scale:
        drop = 1 - summaries[scaled]["rps"] / summaries["bridge"]["rps"]
        print(f"{scaled} vs bridge: throughput {-drop:+.1%}; {startup_calls}")
    open_sums = {name: summarize_open(rs) for name, rs in open_results.items() if rs}
    for name, summary in open_sums.items():
        print(
            f"open loop {name:<6} {summary['offered_rps']:.0f}/s offered: p50 {summary['p50_ms']:.2f} ms,"
            f" p99 {summary['p99_ms']:.2f} ms, p99.9 {summary['p999_ms']:.2f} ms,"
            f" {statistics.median(open_cpu[name]):.0f} us CPU/req, the generator sent p99"
            f" {summary['send_lag_p99_ms']:.2f} ms late, errors {summary['errors']:.0f}"
        )
    print(
        "RSS after the run (MB): "
        + ", ".join(
            f"{k} {own + children:.0f}" + (f" (ingress {own:.0f}, worker {children:.0f})" if children else "")
            for k, (own, children) in rss_parts.items()
        )
    )
    print(f"store after the run: {counts}")
    print(f"Sync calls during the run: {sync_counters}")
    report: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "summary": summaries,
        "ratio": ratio,
        "ratios": ratios,
        "runs": {name: [asdict(r) for r in rs] for name, rs in results.items()},
        "open_loop": open_sums,
        "open_loop_cpu_us_per_request": {name: statistics.median(v) for name, v in open_cpu.items()},
        "open_loop_runs": {name: [asdict(r) for r in rs] for name, rs in open_results.items()},
        "startup": startup_calls,
        "rss_mb": rss,
        "rss_parts_mb": rss_parts,
        "store": counts,
        "sync_calls": sync_counters,
        "store_per_run": {"wrk": store_runs, "open_loop": store_open},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def _fmt_sched(busy: dict[str, float], per_thread: dict[str, dict[str, float]]) -> str:
    """One line: the machine's busy cores, then for each busy thread of the server its CPU, its wait for
    a CPU (seconds per second) and that wait per wake-up."""
    threads = ", ".join(
        f"{k} cpu {v['cpu']:.2f} wait {v['wait']:.2f}"
        f" ({v['wait_us_per_wake']:.0f} us x {v['wakes_per_s']:.0f}/s)"
        for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]["cpu"])
    )
    return (
        f"machine busy {busy['busy']:.2f} of {os.cpu_count()} cores (steal {busy['steal']:.2f},"
        f" iowait {busy['iowait']:.2f}; emulator {busy.get('emulator', 0.0):.2f}); {threads}"
    )


def _fmt_threads(per_thread: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.2f}" for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]))


def _spy_format(path: Path) -> str:
    """py-spy's output format from the file name: .json speedscope, .txt collapsed stacks, else SVG."""
    return {".json": "speedscope", ".txt": "raw"}.get(path.suffix, "flamegraph")


def _print_store_stats(url: str, before: StoreStats | None) -> dict[str, float] | None:
    """Print and return what the run added to the bridge's own commit and fsync histograms (since the
    ninth round: the disk's share of the answers, from the bridge itself, not a throw-away profiler)."""
    after = store_stats(url) if before is not None else None
    if before is None or after is None:
        return None
    added = after.minus(before)
    print(f"      {added.describe()}", flush=True)
    return dataclasses.asdict(added)


def _open_loop(
    url: str, bodies: Path, args: argparse.Namespace, cpus: str | None, run_id: str
) -> OpenLoopResult:
    """Run the open-loop generator in its own process (pinned with the load when asked)."""
    argv = [sys.executable, str(BENCH / "loadgen.py"), f"{url}/webhooks/github", str(bodies),
            "--rate", str(args.rate), "--seconds", str(args.rate_seconds), "--run-id", run_id]  # fmt: skip
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, check=True, cwd=ROOT, env=dict(os.environ))
    return OpenLoopResult(**json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
