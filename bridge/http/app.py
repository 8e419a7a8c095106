"""The Litestar app factory: routes, error mapping, and the service's start and stop."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException

from bridge.http.errors import http_exception, internal_error
from bridge.http.health import healthz, metrics, readyz
from bridge.http.webhooks import github_webhook
from bridge.service import Service


def create_app(service: Service) -> Litestar:
    """The bridge's ASGI app; starting it starts the service (store, worker), stopping stops it."""
    return Litestar(
        route_handlers=[github_webhook, healthz, readyz, metrics],
        state=State({"service": service}),
        on_startup=[service.start],
        on_shutdown=[service.stop],
        exception_handlers={HTTPException: http_exception, Exception: internal_error},
        request_max_body_size=service.settings.max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )
