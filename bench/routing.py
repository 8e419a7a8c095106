"""Micro-benchmark: routing one push through a 10,000-route table (the budget is 1 ms per delivery).

    .venv/bin/python bench/routing.py [--routes 10000] [--lookups 100000] [--seed 1]

The table mixes what a large installation writes: exact ``owner/name`` routes (70 %), globs with a
literal owner such as ``org7/team3-*`` (25 %), globs with a literal name such as ``*/lib12`` (4 %) and
globs on both sides such as ``*/svc9*`` (1 %, the only ones every lookup scans). Lookups mix repositories
that match several routes, one, or none, on default, listed and unlisted branches.

Then the start-up side: the same table written as a YAML file and read by ``load_routes`` in a fresh
process, once as the bridge reads it (libyaml) and once with the pure-Python parser it falls back to:
the seconds it takes and how much larger the process is afterwards (its RSS, the parser's objects freed).
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bridge.core.routing import RouteTable, parse_routes

UUID = "5d6c1f0e-8a4b-4c2d-9e1f-0a1b2c3d4e5f"
OWNERS = 200
BRANCH_CHOICES: list[list[str] | None] = [
    None,
    ["main"],
    ["main", "release/*"],
    ["**"],
    ["dev", "feature/**"],
]


def build_document(count: int, rng: random.Random) -> dict[str, Any]:
    routes: list[dict[str, Any]] = []
    for i in range(count):
        share = i % 100
        if share < 70:
            repository = f"org{i % OWNERS}/svc{i}"
        elif share < 95:
            repository = f"org{i % OWNERS}/team{i}-*"
        elif share < 99:
            repository = f"*/lib{i}"
        else:
            repository = f"*/svc{i}*"
        route: dict[str, Any] = {"repository": repository, "source_id": UUID}
        branches = rng.choice(BRANCH_CHOICES)
        if branches is not None:
            route["branches"] = branches
        routes.append(route)
    return {"routes": routes}


def lookups(count: int, routes: int, rng: random.Random) -> list[tuple[str, str]]:
    result = []
    for _ in range(count):
        i = rng.randrange(routes)
        repository = rng.choice(
            [
                f"org{i % OWNERS}/svc{i}",  # an exact route (and maybe a scanned one)
                f"org{i % OWNERS}/team{i}-api",  # an owner glob
                f"someone/lib{i}",  # a name glob
                f"Org{i % OWNERS}/SVC{i}",  # case-insensitive exact
                f"stranger{i}/nothing",  # no route
            ]
        )
        branch = rng.choice(["main", "release/1.2", "feature/a/b", "hotfix"])
        result.append((repository, branch))
    return result


# Run in a fresh interpreter: argv[1] the file, argv[2] "libyaml" or "pure". Prints routes, s, MB.
_LOAD = """
import gc, os, sys, time
from bridge import routes_file
if sys.argv[2] == "pure":
    routes_file._FAST_LOADER = None
def rss():
    return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
gc.collect()
before, started = rss(), time.perf_counter()
table = routes_file.load_routes(sys.argv[1])
seconds = time.perf_counter() - started
gc.collect()
print(len(table), seconds, rss() - before)
"""


def load_in_a_fresh_process(path: Path, parser: str) -> tuple[int, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _LOAD, str(path), parser], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    document = build_document(args.routes, rng)
    started = time.perf_counter()
    table: RouteTable = parse_routes(document)
    build_ms = (time.perf_counter() - started) * 1000

    queries = lookups(args.lookups, args.routes, rng)
    for repository, branch in queries[:1000]:  # warm up
        table.match(repository, branch, default_branch="main")
    samples: list[float] = []
    matched = 0
    clock = time.perf_counter_ns
    for repository, branch in queries:
        before = clock()
        found = table.match(repository, branch, default_branch="main")
        samples.append((clock() - before) / 1000)
        matched += len(found)
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(p / 100 * len(samples)))]

    per_lookup = matched / len(samples)
    print(f"routes: {len(table)}  lookups: {len(samples)}  routes matched per lookup: {per_lookup:.2f}")
    print(f"parse + index: {build_ms:.0f} ms")
    print(
        f"match µs: mean {statistics.fmean(samples):.2f}  p50 {pct(50):.2f}  p99 {pct(99):.2f}  "
        f"p99.9 {pct(99.9):.2f}  max {samples[-1]:.2f}"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "routes.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        for name in ("libyaml", "pure"):
            count, seconds, grown = load_in_a_fresh_process(path, name)
            label = "libyaml (the bridge)" if name == "libyaml" else "pure-Python parser"
            print(f"reading routes.yaml ({count} routes), {label}: {seconds:.2f} s, RSS +{grown:.1f} MB")


if __name__ == "__main__":
    main()
