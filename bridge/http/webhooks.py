"""``POST /webhooks/github``: verify, parse, route, persist, acknowledge. Nothing else.

Every call to Chroma Sync happens later, in the worker: GitHub waits at most ten seconds and the
answer depends only on the signature, the payload and one durable commit (shared with concurrent
deliveries by the store's group commit).

This one route is a raw ASGI handler (Litestar's ``@asgi``), not a ``@post`` handler. It is the
service's hot path, and profiling showed Litestar's request and response machinery (building a
``Request``, resolving the handler's signature, turning the returned ``Response`` into an
``ASGIResponse``) cost as much CPU per delivery as everything the bridge itself does (verify, decode,
route, hand over to the store, log): about a third of the event loop under load (``bench/HISTORY.md``).
Reading one body and sending one small JSON answer is simple enough to do by hand; what Litestar
would have given for free is done here explicitly and tested in ``tests/http/test_webhook.py``: the
body size limit (413, checked on ``Content-Length`` and while reading), 405 with ``Allow`` for other
methods, the JSON error shape of ``bridge.http.errors``, and a 500 with a log line for anything
unexpected. The app's lifespan and every other route stay ordinary Litestar; since the seventh round
the ASGI app in front (``bridge.http.app.Ingress``) sends requests to this path straight to
:func:`serve_webhook`, past Litestar's router too, and the route below serves only what Litestar
normalises to it (a trailing slash).

What the route logs: a line per rejected delivery (``delivery.rejected``, a warning) and per failure,
always; the routine outcomes (``delivery.accepted``, ``delivery.ignored``, ``delivery.duplicate``) at
``debug``, like uvicorn's access log, which ``bridge.logging`` turns off. Each delivery's outcome is
still counted in ``/metrics`` (``bridge_deliveries_total`` by outcome and reason), kept by GitHub with
the answer's body in the App's "Recent Deliveries", and stored with its jobs (``bridge jobs``); the
worker logs every invocation it creates or cancels at ``info``. Measured: a line per accepted delivery
cost the ingress ~20 us of CPU per request and the bridge ~13 % of its throughput under wrk
(``bench/HISTORY.md``, twenty-sixth round), and at 1,000 deliveries a second it is ~25 GB of log a day.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import msgspec
import structlog
from litestar import asgi
from litestar.types import HTTPScope, Receive, Scope, Send

from bridge.core.errors import DeliveryRejected, PayloadTooLarge
from bridge.core.events import decode_body, decode_push, parse_headers
from bridge.core.intake import intake
from bridge.core.jobs import DeliveryRecord
from bridge.core.signature import verify
from bridge.http.errors import INTERNAL_ERROR, STORE_UNAVAILABLE, rejected_body
from bridge.service import Service
from bridge.store.base import StoreClosed

log = structlog.get_logger("bridge.ingress")

PATH: Final = "/webhooks/github"
_encode = msgspec.json.Encoder().encode
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


@dataclass(frozen=True, slots=True)
class Answer:
    """What the webhook answers: a status and a JSON object."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


class ClientGone(Exception):
    """The client disconnected before its body arrived: nothing to answer, nothing stored."""


def _answer(service: Service, outcome: str, reason: str, status: int, **body: Any) -> Answer:
    service.metrics.count_delivery(outcome, reason)
    return Answer(status, {"status": outcome, "reason": reason, **body})


async def handle_delivery(service: Service, headers: Mapping[str, str], body: bytes) -> Answer:
    """Everything the webhook decides, from the request's headers (lower-case names) and raw body."""
    started = time.perf_counter()
    delivery_id = headers.get("x-github-delivery")
    try:
        verify(body, headers.get("x-hub-signature-256"), service.secrets)
        parsed = parse_headers(headers)
        if parsed.event == "ping":
            return _answer(service, "pong", "ping", 200, delivery_id=parsed.delivery_id)
        content_type = headers.get("content-type")
        if parsed.event != "push":
            decode_body(body, content_type)  # a malformed body is refused whatever the event
            log.debug("delivery.ignored", delivery_id=parsed.delivery_id, gh_event=parsed.event)
            return _answer(service, "ignored", "event_not_handled", 202, delivery_id=parsed.delivery_id)
        push = decode_push(body, content_type)  # decode_body + parse_push, reading only what is needed
    except DeliveryRejected as exc:
        return reject(service, exc, delivery_id)

    now = service.clock()
    fields = {
        "delivery_id": parsed.delivery_id,
        "repository": push.repository.full_name,
        "branch": push.branch,
        "sha": push.after,
    }
    decided = intake(push, service.routes, received_at=now, debounce=service.settings.debounce_seconds)
    if decided.ignored is not None:
        log.debug("delivery.ignored", reason=decided.ignored, **fields)
        return _answer(service, "ignored", decided.ignored, 202, delivery_id=parsed.delivery_id)
    record = DeliveryRecord(
        hook_id=parsed.hook_id,
        delivery_id=parsed.delivery_id,
        event=parsed.event,
        repository=push.repository.full_name,
        ref=push.ref,
        after=push.after,
        received_at=now,
    )
    accepted = await service.store.accept(record, decided.jobs)
    if accepted is None:
        log.debug("delivery.duplicate", **fields)
        return _answer(service, "duplicate", "redelivery", 202, delivery_id=parsed.delivery_id)
    service.wake()
    service.metrics.ingress_seconds.observe(time.perf_counter() - started)
    if accepted.superseded:
        service.metrics.superseded_on_arrival.inc(len(accepted.superseded))
    log.debug("delivery.accepted", jobs=len(decided.jobs), superseded=accepted.superseded, **fields)
    return _answer(
        service,
        "accepted",
        "routed",
        202,
        delivery_id=parsed.delivery_id,
        jobs=[{"lane": j.lane, "collection": j.collection} for j in decided.jobs],
    )


def reject(service: Service, exc: DeliveryRejected, delivery_id: str | None) -> Answer:
    log.warning("delivery.rejected", reason=exc.reason, error=exc.message, delivery_id=delivery_id)
    service.metrics.count_delivery("rejected", exc.reason)
    return Answer(exc.status_code, rejected_body(exc, delivery_id=delivery_id))


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (ASGI servers lower-case them); the first of repeats."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = value.decode("latin-1")
    return headers


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole body, refused with ``PayloadTooLarge`` as soon as it is known to exceed ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"limit is {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, answer: Answer, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = _encode(answer.body)
    headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode()), *(extra or ())]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": False})


@asgi(PATH, copy_scope=False)
async def github_webhook(scope: Scope, receive: Receive, send: Send) -> None:
    """The route in Litestar's table (a path Litestar normalises, e.g. with a trailing slash, and any
    app that mounts the bridge's Litestar app directly); :class:`bridge.http.app.Ingress` calls
    :func:`serve_webhook` without it."""
    await serve_webhook(scope["litestar_app"].state.service, scope, receive, send)


async def serve_webhook(service: Service, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one request to the webhook's path, whatever its method."""
    method = cast("HTTPScope", scope)["method"]
    if method != "POST":
        message = f"Method {method} not allowed: this endpoint takes POST"
        answer = Answer(405, {"error": "method_not_allowed", "message": message})
        await _send(send, answer, [(b"allow", b"POST")])
        return
    headers = _headers(scope)
    try:
        try:
            body = await read_body(receive, headers, service.settings.max_body_bytes)
        except PayloadTooLarge as exc:
            answer = reject(service, exc, headers.get("x-github-delivery"))
        else:
            answer = await handle_delivery(service, headers, body)
    except ClientGone:
        log.info("delivery.client_gone", delivery_id=headers.get("x-github-delivery"))
        return
    except StoreClosed as exc:  # the store (or the worker process that owns it) is down: nothing stored
        log.error(  # noqa: TRY400 - a known state, not a bug: no traceback
            "delivery.store_unavailable", delivery_id=headers.get("x-github-delivery"), error=str(exc)
        )
        answer = Answer(503, STORE_UNAVAILABLE)
    except Exception as exc:  # the store failed, or a bug: answered 500, logged with its traceback
        log.exception("http.internal_error", path=PATH, error_type=type(exc).__name__)
        answer = Answer(500, INTERNAL_ERROR)
    await _send(send, answer)
