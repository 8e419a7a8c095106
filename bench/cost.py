"""Cost: how many Chroma Sync invocations and calls a burst and a steady stream of pushes spend.

    .venv/bin/python bench/cost.py

Each scenario gets a fresh ``bridge emulator`` and ``bridge serve`` (SQLite, production defaults except
the debounce under test) and one repository whose pushes chain (each ``before`` is the previous
``after``), as GitHub sends them:

* ``burst``: 100 pushes to one branch, sent as fast as 8 concurrent connections allow (well within
  one second);
* ``spread``: 100 pushes to one branch, one every 10 ms (exactly one second);
* both with coalescing only (``BRIDGE_DEBOUNCE_SECONDS=0``) and with ``BRIDGE_DEBOUNCE_SECONDS=2``;
* ``steady-0.5s`` and ``steady-2s``: 20 pushes, one every 0.5 s (the superseded invocation is still
  pending: the emulator keeps invocations pending for 1 s, then processing for 2 s) and one every 2 s
  (it has started: the cancel is answered 412);
* ``lagging-0.5s``: 20 pushes, one every 0.5 s, to a Sync that starts nothing for 30 s, so each create
  cancels the one before it and the lane's gap backs off (``BRIDGE_LANE_MAX_GAP_SECONDS``, 8 s);
  ``lagging-0.5s-fixed`` is the same with the backoff off (a max gap of 1 s).

After the pushes it waits until the bridge has nothing left to do (no create or cancel for 3 s beyond
the debounce), then reads the emulator: invocations created for the source, and the API calls it
received by operation. Writes ``bench/results/cost-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH,
    COMMITS_FOR_7KB,
    bridge_env,
    machine,
    routes_yaml,
    scratch_dir,
    signed_headers,
    start_bridge,
    start_emulator,
)
from bridge.samples import encode, fake_sha, push_payload
from bridge.settings import Settings

REPOSITORY = "acme/cost"
_DEFAULT_MAX_GAP: float = Settings.model_fields["lane_max_gap_seconds"].default


def chained_bodies(count: int, tag: str) -> list[tuple[str, bytes]]:
    before, out = "0" * 40, []
    for index in range(count):
        after = fake_sha(f"cost:{tag}:{index}:{time.time_ns()}")
        body = encode(
            push_payload(repository=REPOSITORY, before=before, after=after, commits=COMMITS_FOR_7KB)
        )
        out.append((after, body))
        before = after
    return out


def settle(emulator: Any, *, quiet: float) -> dict[str, int]:
    """Wait until the emulator's create and cancel counters stay still for ``quiet`` seconds."""
    last, still_since = None, time.monotonic()
    while True:
        counters = emulator.counters()
        key = (counters.get("create_invocation", 0), counters.get("cancel_invocation", 0))
        if key != last:
            last, still_since = key, time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            return dict(counters)
        time.sleep(0.2)


def scenario(
    name: str,
    *,
    debounce: float,
    pushes: int,
    interval: float,
    concurrency: int,
    pending: float | None = None,
    max_gap: float | None = None,
) -> dict[str, Any]:
    """``pending``: seconds the emulator keeps each invocation pending (its default: 1); ``max_gap``:
    ``BRIDGE_LANE_MAX_GAP_SECONDS`` (None: the service's default)."""
    folder = scratch_dir(f"cost-{name}-")
    emulator = start_emulator(folder)
    bridge = None
    try:
        if pending is not None:
            emulator.configure(pending_seconds=pending)
        source = emulator.add_source(REPOSITORY)
        extra = {} if max_gap is None else {"BRIDGE_LANE_MAX_GAP_SECONDS": str(max_gap)}
        env = bridge_env(
            folder,
            sync_url=emulator.url,
            routes=routes_yaml([source], repositories=[REPOSITORY]),
            BRIDGE_DEBOUNCE_SECONDS=str(debounce),
            **extra,
        )
        bridge = start_bridge(folder, env)
        bodies = chained_bodies(pushes, name)
        before = emulator.counters()
        started = time.monotonic()
        with httpx.Client(base_url=bridge.url, timeout=10) as client:

            def send(item: tuple[str, bytes]) -> int:
                return client.post(
                    "/webhooks/github", content=item[1], headers=signed_headers(item[1])
                ).status_code

            if concurrency > 1:
                with ThreadPoolExecutor(concurrency) as pool:
                    statuses = list(pool.map(send, bodies))
            else:
                statuses = []
                for index, item in enumerate(bodies):
                    delay = started + index * interval - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    statuses.append(send(item))
        sent_in = time.monotonic() - started
        # A lane in backoff may hold its last create for up to the longest gap.
        longest = max_gap if max_gap is not None else _DEFAULT_MAX_GAP
        after = settle(emulator, quiet=3 + debounce + (longest if pending is not None else 0.0))
        invocations = emulator.invocations(source)
    finally:
        if bridge is not None:
            bridge.stop()
        emulator.proc.stop()
    calls = {op: after.get(op, 0) - before.get(op, 0) for op in sorted(set(after) | set(before))}
    calls = {op: n for op, n in calls.items() if n}
    newest = bodies[-1][0]
    result = {
        "scenario": name,
        "debounce_s": debounce,
        "pending_s": pending,
        "max_gap_s": max_gap,
        "pushes": pushes,
        "accepted": sum(1 for s in statuses if s == 202),
        "sent_in_s": round(sent_in, 3),
        "invocations_created": len(invocations),
        "newest_indexed": any(i["sha"] == newest for i in invocations),
        "statuses": sorted({i["status"] for i in invocations}),
        "sync_calls": calls,
        "sync_calls_per_push": {op: round(n / pushes, 3) for op, n in calls.items()},
    }
    print(
        f"{name:<16} debounce {debounce:>3}s: {pushes} pushes in {sent_in:.2f}s -> "
        f"{len(invocations)} invocation(s), newest indexed: {result['newest_indexed']}, calls {calls}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "cost-latest.json")
    args = parser.parse_args()
    results = [
        scenario("burst", debounce=0, pushes=100, interval=0, concurrency=8),
        scenario("spread", debounce=0, pushes=100, interval=0.01, concurrency=1),
        scenario("burst+debounce", debounce=2, pushes=100, interval=0, concurrency=8),
        scenario("spread+debounce", debounce=2, pushes=100, interval=0.01, concurrency=1),
        scenario("steady-0.5s", debounce=0, pushes=20, interval=0.5, concurrency=1),
        scenario("steady-2s", debounce=0, pushes=20, interval=2.0, concurrency=1),
        # Sync lagging: nothing starts for 30 s. With the lane's gap backing off (the default) and
        # without (a max gap of 1 s, the min gap).
        scenario("lagging-0.5s", debounce=0, pushes=20, interval=0.5, concurrency=1, pending=30),
        scenario(
            "lagging-0.5s-fixed", debounce=0, pushes=20, interval=0.5, concurrency=1, pending=30, max_gap=1
        ),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine(), "scenarios": results}, indent=2))


if __name__ == "__main__":
    main()
