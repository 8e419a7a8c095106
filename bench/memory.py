"""Memory and store size: the bridge's RSS over 100,000 deliveries, and retention bounding the store.

    .venv/bin/python bench/memory.py [--deliveries 100000] [--days 14] [--per-day 5000] [--routes-scale 10000]

Part 1 (real processes): ``bridge emulator`` and ``bridge serve`` (SQLite on the project's disk,
worker running, production defaults), then wrk (``bench/wrk_push.lua``, 32 connections) sends
distinct signed ~7 KB pushes over 50 repositories, in wrk runs of ``--chunk-seconds``, until at least
``--deliveries`` are stored. After each run, once the bridge is idle: its resident memory (``VmRSS``
of ``/proc/PID/status``; the ingress and the worker process, and their sum), the database file size
(main file + WAL) and the rows stored. ``--routes-scale N`` gives the bridge ``N`` more routes, none
matching the pushes (``bench/ingress.py``'s mix): target 5 at target 6's scale.

Part 2 (the store, in-process, simulated clock): ``--days`` days of ``--per-day`` deliveries, one job
each, the jobs finished (superseded) the same day, then the pruner's call with the default retention
(``BRIDGE_RETENTION_DAYS=7``): rows and file size per day. They grow for 7 days, then stay flat: the
file does not shrink (SQLite reuses freed pages), it stops growing.

Writes ``bench/results/memory-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH,
    bridge_env,
    machine,
    push_bodies,
    routes_yaml,
    rss_parts_mb,
    run_wrk,
    scratch_dir,
    start_bridge,
    start_emulator,
    write_wrk_bodies,
)
from bench.ingress import extra_routes, wait_idle
from bench.prune import fill, prune_in_batches
from bridge.store.sqlite import SqliteStore
from bridge.worker import PRUNE_BATCH

DAY = 86_400.0


def db_size_mb(path: Path) -> float:
    total = 0
    for suffix in ("", "-wal"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            total += candidate.stat().st_size
    return total / 1024 / 1024


def rows(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {
            table: int(connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
            for table in ("deliveries", "jobs", "lanes")
        }
    finally:
        connection.close()


def rss_split(pid: int) -> dict[str, float]:
    """The bridge's resident memory: its ingress process, its worker process, and the sum."""
    ingress, worker = rss_parts_mb(pid)
    return {"rss_mb": ingress + worker, "ingress_mb": ingress, "worker_mb": worker}


def describe(sample: dict[str, Any]) -> str:
    return (
        f"RSS {sample['rss_mb']:.1f} MB (ingress {sample['ingress_mb']:.1f},"
        f" worker process {sample['worker_mb']:.1f})"
    )


def part_rss(deliveries: int, chunk_seconds: float, routes_scale: int) -> list[dict[str, Any]]:
    folder = scratch_dir("memory-")
    emulator = start_emulator(folder)
    samples: list[dict[str, Any]] = []
    bridge = None
    try:
        repositories = [f"acme/mem-{k}" for k in range(50)]
        sources = [emulator.add_source(r) for r in repositories]
        routes = routes_yaml(sources, repositories=repositories)
        if routes_scale:
            routes += extra_routes(routes_scale)
        env = bridge_env(folder, sync_url=emulator.url, routes=routes)
        bridge = start_bridge(folder, env)
        bodies_file = folder / "bodies.bin"
        write_wrk_bodies(bodies_file, push_bodies(8192, repositories=repositories))
        db = folder / "bridge.db"
        wait_idle([bridge, emulator.proc])
        samples.append({"deliveries": 0, **rss_split(bridge.pid), "db_mb": db_size_mb(db), **rows(db)})
        print(f"start ({len(repositories) + routes_scale} routes): {describe(samples[-1])}", flush=True)
        chunk = 0
        while samples[-1]["deliveries"] < deliveries:
            chunk += 1
            result = run_wrk(
                bridge.url, bodies_file, run_id=f"m{chunk}-{time.time_ns()}", seconds=chunk_seconds
            )
            wait_idle([bridge, emulator.proc])
            counts = rows(db)
            samples.append(
                {
                    "deliveries": counts["deliveries"],
                    **rss_split(bridge.pid),
                    "db_mb": db_size_mb(db),
                    "rps": result.rps,
                    **counts,
                }
            )
            print(
                f"after {counts['deliveries']:>6} deliveries: {describe(samples[-1])}, "
                f"store {samples[-1]['db_mb']:.1f} MB, rows {counts}, {result.rps:.0f} req/s",
                flush=True,
            )
    finally:
        if bridge is not None:
            bridge.stop()
        emulator.proc.stop()
    return samples


async def part_retention(days: int, per_day: int, retention_days: float) -> list[dict[str, Any]]:
    folder = scratch_dir("retention-")
    path = folder / "bridge.db"
    store = SqliteStore(path)
    await store.open()
    out: list[dict[str, Any]] = []
    try:
        start = 1_700_000_000.0
        for day in range(days):
            now = start + day * DAY
            await fill(store, count=per_day, now=now, day=day, superseded_at=now + 60)
            cutoff = now + 120 - retention_days * DAY
            pruned = await prune_in_batches(store, before=cutoff, limit=PRUNE_BATCH)  # as the worker does
            counts = rows(path)
            out.append(
                {
                    "day": day + 1,
                    "db_mb": db_size_mb(path),
                    "pruned": pruned["deleted"],
                    "prune_batch_max_s": pruned["longest_s"],
                    **counts,
                }
            )
            print(
                f"day {day + 1:>2}: {counts['deliveries']:>6} deliveries, {counts['jobs']:>6} jobs stored, "
                f"file {out[-1]['db_mb']:.1f} MB (pruned {pruned['deleted'][0]} deliveries,"
                f" {pruned['deleted'][1]} jobs in {pruned['transactions']} batches,"
                f" the longest {1e3 * pruned['longest_s']:.0f} ms)",
                flush=True,
            )
    finally:
        await store.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=100_000)
    parser.add_argument("--chunk-seconds", type=float, default=20, help="wrk run between two samples")
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--per-day", type=int, default=5000)
    parser.add_argument("--retention-days", type=float, default=7.0)
    parser.add_argument(
        "--routes-scale", type=int, default=0, help="this many more routes (bench/ingress.py's)"
    )
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "memory-latest.json")
    args = parser.parse_args()
    rss = [] if args.skip_rss else part_rss(args.deliveries, args.chunk_seconds, args.routes_scale)
    retention = asyncio.run(part_retention(args.days, args.per_day, args.retention_days))
    growth = None
    if len(rss) >= 2 and rss[-1]["deliveries"] > rss[0]["deliveries"]:
        growth = (rss[-1]["db_mb"] - rss[0]["db_mb"]) * 1024 / (rss[-1]["deliveries"] - rss[0]["deliveries"])
        print(
            f"store growth: {growth:.2f} KB per delivery; RSS after the last chunk {rss[-1]['rss_mb']:.1f} MB"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "routes_scale": args.routes_scale,
                "rss": rss,
                "kb_per_delivery": growth,
                "retention": retention,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
