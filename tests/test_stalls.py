"""The event-loop stall watcher: a wake-up late by the threshold or more is logged, with how late."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.routes_file import parse_routes_text
from bridge.service import Service
from bridge.settings import Settings
from bridge.stalls import watch_loop
from bridge.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def _watch_while(block: float, *, threshold: float) -> list[dict[str, object]]:
    with capture_logs() as logs:
        watcher = asyncio.ensure_future(watch_loop(every=0.01, threshold=threshold))
        await asyncio.sleep(0.05)
        time.sleep(block)  # noqa: ASYNC251 - the point: the loop is held, no callback runs meanwhile
        await asyncio.sleep(0.05)
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
    return [line for line in logs if line["event"] == "loop.stalled"]


async def test_a_held_loop_is_logged_with_how_long() -> None:
    """Holding the loop 0.2 s gives one warning, at least 0.15 s late (0.2 s less the 0.01 s sleep and
    slack); the threshold is 0.1 s."""
    lines = await _watch_while(0.2, threshold=0.1)
    assert len(lines) == 1
    assert lines[0]["log_level"] == "warning"
    assert float(lines[0]["seconds"]) >= 0.15  # type: ignore[arg-type]


async def test_a_stall_under_the_threshold_is_not_logged() -> None:
    """The same 0.2 s hold against a 5 s threshold: nothing."""
    assert await _watch_while(0.2, threshold=5.0) == []


async def test_the_service_watches_its_loop_while_started(tmp_path: Path) -> None:
    """``Service.start`` starts one ``loop-stalls`` task; ``stop`` cancels it."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        webhook_secret="stalls-test-secret",
        sync_token="token-for-tests",
        sync_url="http://127.0.0.1:9",
        database_url=f"sqlite:///{tmp_path / 'bridge.db'}",
        worker="off",
    )
    routes = parse_routes_text("routes: []\n")
    service = Service(settings=settings, routes=routes, store=SqliteStore(tmp_path / "bridge.db"))

    def watchers() -> list[asyncio.Task[object]]:
        return [task for task in asyncio.all_tasks() if task.get_name() == "loop-stalls" and not task.done()]

    await service.start()
    try:
        assert len(watchers()) == 1
    finally:
        await service.stop()
    await asyncio.sleep(0)
    assert watchers() == []
