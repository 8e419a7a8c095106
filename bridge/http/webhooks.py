"""``POST /webhooks/github``: verify, parse, route, persist, acknowledge. Nothing else.

Every call to Chroma Sync happens later, in the worker: GitHub waits at most ten seconds and the
answer depends only on the signature, the payload and one durable commit (shared with concurrent
deliveries by the store's group commit).
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from litestar import Request, Response, post
from litestar.exceptions.http_exceptions import RequestEntityTooLarge

from bridge.core.errors import DeliveryRejected, PayloadTooLarge
from bridge.core.events import decode_body, decode_push, parse_headers
from bridge.core.intake import intake
from bridge.core.jobs import DeliveryRecord
from bridge.core.signature import verify
from bridge.http.errors import rejected
from bridge.service import Service

log = structlog.get_logger("bridge.ingress")


def _answer(service: Service, outcome: str, reason: str, status: int, **body: Any) -> Response[Any]:
    service.metrics.count_delivery(outcome, reason)
    return Response({"status": outcome, "reason": reason, **body}, status_code=status)


@post("/webhooks/github", status_code=202)
async def github_webhook(request: Request[Any, Any, Any]) -> Response[Any]:
    service: Service = request.app.state.service
    started = time.perf_counter()
    delivery_id = request.headers.get("x-github-delivery")
    try:
        try:
            body = await request.body()
        except RequestEntityTooLarge as exc:
            raise PayloadTooLarge(f"limit is {service.settings.max_body_bytes} bytes") from exc
        verify(body, request.headers.get("x-hub-signature-256"), service.secrets)
        headers = parse_headers(request.headers)
        if headers.event == "ping":
            return _answer(service, "pong", "ping", 200, delivery_id=headers.delivery_id)
        content_type = request.headers.get("content-type")
        if headers.event != "push":
            decode_body(body, content_type)  # a malformed body is refused whatever the event
            log.info("delivery.ignored", delivery_id=headers.delivery_id, gh_event=headers.event)
            return _answer(service, "ignored", "event_not_handled", 202, delivery_id=headers.delivery_id)
        push = decode_push(body, content_type)  # decode_body + parse_push, reading only what is needed
    except DeliveryRejected as exc:
        log.warning("delivery.rejected", reason=exc.reason, error=exc.message, delivery_id=delivery_id)
        service.metrics.count_delivery("rejected", exc.reason)
        return rejected(exc, delivery_id=delivery_id)

    now = service.clock()
    fields = {
        "delivery_id": headers.delivery_id,
        "repository": push.repository.full_name,
        "branch": push.branch,
        "sha": push.after,
    }
    decided = intake(push, service.routes, received_at=now, debounce=service.settings.debounce_seconds)
    if decided.ignored is not None:
        log.info("delivery.ignored", reason=decided.ignored, **fields)
        return _answer(service, "ignored", decided.ignored, 202, delivery_id=headers.delivery_id)
    record = DeliveryRecord(
        hook_id=headers.hook_id,
        delivery_id=headers.delivery_id,
        event=headers.event,
        repository=push.repository.full_name,
        ref=push.ref,
        after=push.after,
        received_at=now,
    )
    if not await service.store.accept(record, decided.jobs):
        log.info("delivery.duplicate", **fields)
        return _answer(service, "duplicate", "redelivery", 202, delivery_id=headers.delivery_id)
    service.wake()
    service.metrics.ingress_seconds.observe(time.perf_counter() - started)
    log.info("delivery.accepted", jobs=len(decided.jobs), **fields)
    return _answer(
        service,
        "accepted",
        "routed",
        202,
        delivery_id=headers.delivery_id,
        jobs=[{"lane": j.lane, "collection": j.collection} for j in decided.jobs],
    )
