"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from litestar import Request, Response, get

from bridge.metrics import CONTENT_TYPE_LATEST
from bridge.service import Service

log = structlog.get_logger("bridge.health")


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Settings and routes loaded, the service started, the worker process (if any) running, and the
    store answers within two seconds."""
    service: Service = request.app.state.service
    checks: dict[str, str] = {"settings": "ok", "routes": f"{len(service.routes.routes)} routes"}
    ready = service.started
    checks["service"] = "started" if ready else "starting"
    if service.worker_process is not None:
        running = service.worker_process.running
        checks["worker"] = "process running" if running else "process restarting"
        ready = ready and running
    try:
        await asyncio.wait_for(service.store.ping(), timeout=2.0)
        checks["store"] = "ok"
    except Exception as exc:  # any failure to answer means not ready
        log.warning("readyz.store_unavailable", error=type(exc).__name__)
        checks["store"] = f"unavailable: {type(exc).__name__}"
        ready = False
    return Response(
        {"status": "ready" if ready else "not_ready", "checks": checks}, status_code=200 if ready else 503
    )


@get("/metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus text; job counts per state are read from the store at scrape time."""
    service: Service = request.app.state.service
    try:
        service.metrics.set_job_counts(await asyncio.wait_for(service.store.counts(), timeout=2.0))
    except Exception as exc:
        log.warning("metrics.counts_unavailable", error=type(exc).__name__)
    worker: bytes | None = None
    if service.worker_process is not None:
        try:
            worker = await asyncio.wait_for(service.worker_process.call("metrics"), timeout=2.0)
        except Exception as exc:  # the ingress's own metrics still answer
            log.warning("metrics.worker_unavailable", error=type(exc).__name__)
            worker = b""
    return Response(service.metrics.render(worker=worker), media_type=CONTENT_TYPE_LATEST)
