"""The Litestar app factory: routes, error mapping, and the service's start and stop."""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import Receive, Scope, Send

from bridge.http.errors import http_exception, internal_error
from bridge.http.health import healthz, metrics, readyz
from bridge.http.webhooks import PATH, github_webhook, serve_webhook
from bridge.service import Service


class Ingress:
    """The ASGI app uvicorn serves: requests to ``/webhooks/github`` go straight to the webhook's
    handler, everything else (the other routes, the lifespan that starts and stops the service) to
    Litestar.

    Why not Litestar all the way: the webhook is the hot path, and under wrk Litestar's router and
    exception middleware in front of a raw ASGI handler cost ~8 % of the ingress's CPU
    (``bench/HISTORY.md``, seventh round), for nothing the handler needs: it catches its own errors
    and answers them in Litestar's JSON error shape. Any other path, a trailing slash included,
    still reaches the same handler through Litestar's route table.
    """

    def __init__(self, app: Litestar, service: Service) -> None:
        self._litestar = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["path"] == PATH:
            await serve_webhook(self._service, scope, receive, send)
        else:
            await self._litestar(scope, receive, send)


def create_app(service: Service) -> Ingress:
    """The bridge's ASGI app; starting it starts the service (store, worker), stopping stops it."""
    return Ingress(create_litestar(service), service)


def create_litestar(service: Service) -> Litestar:
    """The Litestar app behind :class:`Ingress`: every route, error mapping, start and stop."""
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
