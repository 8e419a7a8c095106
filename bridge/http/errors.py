"""One place that maps the error tree to HTTP: a JSON body ``{"error": reason, "message": ...}``."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from bridge.core.errors import DeliveryRejected

log = structlog.get_logger("bridge.http")


def rejected_body(exc: DeliveryRejected, *, delivery_id: str | None = None) -> dict[str, Any]:
    """The JSON body of a refused delivery (the webhook sends it itself, at the ASGI level)."""
    body: dict[str, Any] = {"error": exc.reason, "message": exc.message}
    if delivery_id:
        body["delivery_id"] = delivery_id
    return body


STORE_UNAVAILABLE: dict[str, Any] = {
    "error": "store_unavailable",
    "message": "The bridge cannot store deliveries right now; nothing was stored. Redeliver it later.",
}

INTERNAL_ERROR: dict[str, Any] = {
    "error": "internal_error",
    "message": "The bridge failed to handle this request.",
}


def http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's own errors (404, 405, 413 from the framework) as the same JSON shape."""
    reason = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
        exc.status_code, "http_error"
    )
    return Response({"error": reason, "message": exc.detail}, status_code=exc.status_code)


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Anything unexpected: logged with its traceback, answered 500 without details."""
    log.error("http.internal_error", path=request.url.path, error_type=type(exc).__name__, exc_info=exc)
    return Response(INTERNAL_ERROR, status_code=500)
