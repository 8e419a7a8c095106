"""Push to invocation: from a delivery leaving the sender to the create call reaching the Sync emulator.

    .venv/bin/python bench/push_to_invocation.py [--pushes 200] [--interval 0.05] [--repos 40]

Starts ``bridge emulator`` and ``bridge serve`` (SQLite on the project's disk, production defaults,
debounce off) as separate processes, then sends ``--pushes`` signed ~7 KB pushes, one every
``--interval`` seconds, round-robin over ``--repos`` repositories (one source and lane each), and
records the wall-clock time (``time.time()``) just before each request is written. The emulator
stamps each invocation's ``created_at`` with its own ``time.time()`` when the create call reaches its
handler; both processes read the same host clock, so the difference is the whole path: HTTP to the
bridge, verify, route, durable commit, 202, worker wake-up, lane claim, lane read, the ``creating``
commit, the HTTP create call. Each push is matched to its invocation by commit (``after``).

Each lane gets a push every ~2.2 s (40 lanes, one push every ~55 ms counting its answer), well past the
lane's minimum gap between two creates (``BRIDGE_LANE_MIN_GAP_SECONDS``, 1 s): a push within its lane's
gap waits for the gap to end by design (target 4's coalescing), and would measure the gap, not the path.
Until the fourteenth round the default was 20 lanes, one push every ~1.1-1.2 s, only 0.1-0.2 s past the
gap (``bench/HISTORY.md``).

Prints median, p95, p99 and max, and writes ``bench/results/push-to-invocation-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH,
    COMMITS_FOR_7KB,
    bridge_env,
    machine,
    median,
    percentile,
    routes_yaml,
    scratch_dir,
    signed_headers,
    start_bridge,
    start_emulator,
)
from bridge.samples import encode, fake_sha, push_payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between pushes")
    parser.add_argument("--repos", type=int, default=40, help="lanes, pushed in turn")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "push-to-invocation-latest.json")
    args = parser.parse_args()

    folder = scratch_dir("p2i-")
    emulator = start_emulator(folder)
    bridge = None
    sent: dict[str, float] = {}
    answered: list[float] = []
    try:
        repositories = [f"acme/p2i-{k}" for k in range(args.repos)]
        sources = [emulator.add_source(repository) for repository in repositories]
        env = bridge_env(
            folder, sync_url=emulator.url, routes=routes_yaml(sources, repositories=repositories)
        )
        bridge = start_bridge(folder, env)
        heads = dict.fromkeys(repositories, "0" * 40)
        with httpx.Client(base_url=bridge.url, timeout=10) as client:
            for index in range(args.pushes):
                repository = repositories[index % len(repositories)]
                after = fake_sha(f"p2i:{time.time_ns()}:{index}")
                body = encode(
                    push_payload(
                        repository=repository, before=heads[repository], after=after, commits=COMMITS_FOR_7KB
                    )
                )
                heads[repository] = after
                headers = signed_headers(body)
                started = time.time()
                response = client.post("/webhooks/github", content=body, headers=headers)
                answered.append(time.time() - started)
                if response.status_code != 202 or response.json()["status"] != "accepted":
                    raise RuntimeError(f"push {index}: {response.status_code} {response.text}")
                sent[after] = started
                time.sleep(args.interval)
        deadline = time.monotonic() + 30
        created: dict[str, float] = {}
        while time.monotonic() < deadline:
            created = {
                item["sha"]: datetime.fromisoformat(item["created_at"].replace("Z", "+00:00")).timestamp()
                for item in emulator.invocations()
                if item["sha"] in sent
            }
            if len(created) == len(sent):
                break
            time.sleep(0.5)
    finally:
        if bridge is not None:
            bridge.stop()
        emulator.proc.stop()

    latencies = [(created[sha] - sent[sha]) * 1e3 for sha in sent if sha in created]
    answers = [a * 1e3 for a in answered]
    result = {
        "machine": machine(),
        "pushes": args.pushes,
        "created": len(latencies),
        "interval_s": args.interval,
        "push_to_invocation_ms": {
            "median": median(latencies),
            "p95": percentile(latencies, 95),
            "p99": percentile(latencies, 99),
            "max": max(latencies, default=float("nan")),
        },
        "answer_ms": {"median": median(answers), "p99": percentile(answers, 99)},
    }
    p2i = result["push_to_invocation_ms"]
    print(f"machine: {result['machine']}")
    print(
        f"{len(latencies)}/{args.pushes} pushes became invocations; push to create call: "
        f"median {p2i['median']:.1f} ms, p95 {p2i['p95']:.1f} ms, p99 {p2i['p99']:.1f} ms,"
        f" max {p2i['max']:.1f} ms"
    )
    print(f"202 seen by the sender: median {median(answers):.2f} ms, p99 {percentile(answers, 99):.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
