"""The running bridge: settings, routes, store, Sync client, worker and metrics, wired once.

``bridge serve`` builds one ``Service`` and hands it to the app factory; the app's lifespan starts
and stops it. Nothing here reads the environment: settings arrive already built.

Where the worker runs (``BRIDGE_WORKER``): ``process`` (``worker_process`` is set; the worker and, with
SQLite, the database live in a child process, see ``bridge.worker_process``), ``inline`` (``worker`` is
set: the worker's loops run on this event loop, as tests and tools that drive it do) or ``off``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import structlog

from bridge.clients.sync import SyncClient
from bridge.core.retry import RetryPolicy
from bridge.core.routing import RouteTable
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.stalls import start_watching
from bridge.store.base import IngressStore, Store
from bridge.store.sqlite import SqliteStore
from bridge.worker import Worker, WorkerConfig
from bridge.worker_process import RemoteStore, WorkerProcess

log = structlog.get_logger("bridge.service")


def replica_name() -> str:
    """A name for this process in lane leases and logs: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def worker_config(settings: Settings, *, owner: str) -> WorkerConfig:
    return WorkerConfig(
        owner=owner,
        concurrency=settings.worker_concurrency,
        lease=settings.lease_seconds,
        poll_interval=settings.poll_interval_seconds,
        track_min=settings.track_min_seconds,
        track_max=settings.track_max_seconds,
        retention=settings.retention_days * 86_400,
        lane_gap=settings.lane_min_gap_seconds,
        lane_gap_max=settings.lane_max_gap_seconds,
        retry=RetryPolicy(
            base=settings.retry_base_seconds,
            cap=settings.retry_cap_seconds,
            horizon=settings.retry_horizon_seconds,
        ),
    )


def sync_client(settings: Settings) -> SyncClient:
    """The Chroma Sync client the settings describe (callers that need a token check it first)."""
    token = settings.sync_token.get_secret_value() if settings.sync_token is not None else ""
    return SyncClient(
        base_url=settings.sync_url,
        token=token,
        timeout=settings.sync_timeout,
        source_body_shape=settings.sync_source_body,
    )


@dataclass
class Service:
    settings: Settings
    routes: RouteTable
    store: IngressStore
    sync: SyncClient | None = None  # the in-process worker's client; None when the worker runs elsewhere
    clock: Callable[[], float] = time.time
    owner: str = field(default_factory=replica_name)
    metrics: Metrics = field(default_factory=Metrics)
    worker: Worker | None = None
    worker_process: WorkerProcess | None = None
    started: bool = False
    _stalls: asyncio.Task[None] | None = field(default=None, init=False, repr=False)  # while started

    def __post_init__(self) -> None:
        self.secrets = self.settings.webhook_secrets
        if self.settings.worker == "inline" and self.worker is None:
            if self.sync is None or isinstance(self.store, RemoteStore):
                raise ValueError("an inline worker needs a Sync client and the store itself")
            self.worker = Worker(
                store=cast(Store, self.store),
                sync=self.sync,
                config=worker_config(self.settings, owner=self.owner),
                clock=self.clock,
                metrics=self.metrics,
            )

    async def start(self) -> None:
        if self.worker_process is not None:
            await self.worker_process.start()  # with SQLite, it opens the database (migrations included)
        watch_store(self.store, self.metrics)
        await self.store.open()
        if self.worker is not None:
            self.worker.start()
        self._stalls = start_watching()
        self.started = True
        log.info(
            "service.started",
            owner=self.owner,
            routes=len(self.routes.routes),
            worker=self.settings.worker,
            sync_url=self.settings.sync_url,
        )

    async def stop(self) -> None:
        log.info("service.stopping", timeout=self.settings.shutdown_timeout)
        self.started = False
        if self._stalls is not None:
            self._stalls.cancel()
            self._stalls = None
        if self.worker is not None:
            await self.worker.stop(grace=self.settings.shutdown_timeout)
        if self.worker_process is not None:
            await self.worker_process.stop(grace=self.settings.shutdown_timeout)
        if self.sync is not None:
            await self.sync.aclose()
        await self.store.close()
        log.info("service.stopped")

    def wake(self) -> None:
        """New jobs were stored: tell the worker, wherever it runs."""
        if self.worker is not None:
            self.worker.wake()
        elif self.worker_process is not None:
            self.worker_process.wake()


def watch_store(store: object, metrics: Metrics) -> None:
    """Count a SQLite store's group commits and WAL fsyncs in ``metrics`` (``bridge_store_*``); any
    other store (PostgreSQL, the worker process's proxy) has none of its own to count."""
    if isinstance(store, SqliteStore):
        store.on_commit = metrics.observe_commit
        store.on_sync = metrics.store_sync_seconds.observe


def freeze_startup_objects() -> None:
    """Move everything built at start-up (modules, settings, the route table) out of the garbage
    collector's sight: it lives as long as the process, and a full collection that walked it all
    again paused the event loop for ~28 ms (``bench/HISTORY.md``, seventh round)."""
    gc.collect()
    gc.freeze()
