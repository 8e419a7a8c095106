"""Event-loop stalls: a task that wakes every ``EVERY`` seconds and logs ``loop.stalled`` when it woke
``THRESHOLD`` or more late.

Each process of the bridge answers on one event loop; while that loop is held (a long callback, a
blocking call, the process waiting for a CPU or on a write its disk throttles), every answer waits as
long. The store logs its own slow commits and fsyncs (``store.slow_commit``, ``store.slow_fsync``); this
line covers everything else, so a slow answer can be matched to a stall of the ingress or of the worker
process. Measured in the twenty-second round: the p99 at 1,000 deliveries a second on the AMD VM
followed the WAL's slow fsyncs in most runs, but one run reached 118 ms with none (``bench/HISTORY.md``).

Hand-written: asyncio's debug mode reports slow callbacks, but it also slows the whole loop down and
says nothing about time the process spent off the CPU; a sleeping task that measures its own lateness
costs 20 wake-ups a second and sees both.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

log = structlog.get_logger("bridge.stalls")

EVERY: Final = 0.05  # seconds between two wake-ups
THRESHOLD: Final = 0.1  # a wake-up this late is logged


async def watch_loop(*, every: float = EVERY, threshold: float = THRESHOLD) -> None:
    """Run until cancelled: log ``loop.stalled`` (``seconds``: how late the wake-up was) for each
    wake-up at least ``threshold`` late."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + every
        await asyncio.sleep(every)
        late = loop.time() - due
        if late >= threshold:
            log.warning("loop.stalled", seconds=round(late, 3))


def start_watching() -> asyncio.Task[None]:
    """``watch_loop`` as a task of the running loop (cancel it to stop)."""
    return asyncio.get_running_loop().create_task(watch_loop(), name="loop-stalls")
