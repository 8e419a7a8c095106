"""The emulator's HTTP layer: Chroma Sync's published endpoints over :class:`EmulatorState`, and uvicorn.

``/api/v1/...`` follows the seeds (paths, methods, statuses, ``x-chroma-token``, ``{"error", "message"}``);
``/_emulator/...`` (no token) injects faults, changes configuration and shows the state. Fault rules are
applied by :class:`FaultMiddleware`, around the API handlers and before authentication, like a proxy.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket
from typing import Any

import anyio
import uvicorn
from litestar import Litestar, Request, Response, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath
from litestar.types import ASGIApp, Guard, Message, Receive, Scope, Send

from bridge.emulator.errors import ApiError, bad_request, reason_phrase
from bridge.emulator.faults import FaultRule, parse_rules
from bridge.emulator.state import EmulatorState

AnyRequest = Request[Any, Any, Any]
Emulator = NamedDependency[EmulatorState]


# Chroma Sync API


@post("/sources", opt={"operation": "create_source"})
async def create_source(request: AnyRequest, emu: Emulator) -> Response[Any]:
    created = emu.create_source(await _json_body(request))
    return Response(created, status_code=emu.config.create_status)


@get("/sources", opt={"operation": "list_sources"})
async def list_sources(request: AnyRequest, emu: Emulator) -> list[dict[str, Any]]:
    return emu.list_sources(_query(request))


@get("/sources/{source_id:str}", opt={"operation": "get_source"})
async def get_source(source_id: FromPath[str], emu: Emulator) -> dict[str, Any]:
    return emu.get_source(source_id)


@delete("/sources/{source_id:str}", opt={"operation": "delete_source"})
async def delete_source(source_id: FromPath[str], emu: Emulator) -> None:
    emu.delete_source(source_id)


@post("/sources/{source_id:str}/invocations", opt={"operation": "create_invocation"})
async def create_invocation(source_id: FromPath[str], request: AnyRequest, emu: Emulator) -> Response[Any]:
    created = emu.create_invocation(source_id, await _json_body(request))
    return Response(created, status_code=emu.config.create_status)


@get("/invocations", opt={"operation": "list_invocations"})
async def list_invocations(request: AnyRequest, emu: Emulator) -> list[dict[str, Any]]:
    return emu.list_invocations(_query(request))


@get("/invocations/{invocation_id:str}", opt={"operation": "get_invocation"})
async def get_invocation(invocation_id: FromPath[str], emu: Emulator) -> dict[str, Any]:
    return emu.get_invocation(invocation_id)


@put("/invocations/{invocation_id:str}", opt={"operation": "cancel_invocation"})
async def cancel_invocation(invocation_id: FromPath[str], emu: Emulator) -> Response[bytes]:
    emu.cancel_invocation(invocation_id)
    return Response(b"", status_code=202)


# Emulator control


@post("/faults", status_code=200)
async def add_faults(request: AnyRequest, emu: Emulator) -> dict[str, Any]:
    emu.add_faults(parse_rules(await _json_body(request)))
    return {"faults": emu.snapshot()["faults"]}


@delete("/faults")
async def clear_faults(emu: Emulator) -> None:
    emu.clear_faults()


@get("/state")
async def show_state(emu: Emulator) -> dict[str, Any]:
    return emu.snapshot()


@post("/config", status_code=200)
async def configure(request: AnyRequest, emu: Emulator) -> dict[str, Any]:
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise bad_request("config must be an object")
    return emu.configure(**body).to_json()


@post("/reset", status_code=204)
async def reset(emu: Emulator) -> None:
    emu.reset()


def create_emulator_app(*, token: str, state: EmulatorState | None = None) -> Litestar:
    """A Litestar app emulating Chroma Sync for ``token``; the state is also ``app.state.emulator``."""
    if not token:
        raise ValueError("the emulator needs a token to check")
    emu = state if state is not None else EmulatorState()
    api = Router(
        "/api/v1",
        route_handlers=[
            create_source,
            list_sources,
            get_source,
            delete_source,
            create_invocation,
            list_invocations,
            get_invocation,
            cancel_invocation,
        ],
        guards=[_token_guard(token)],
        # A closure, not DefineMiddleware: Litestar deep-copies routers and the state holds a lock.
        middleware=[lambda app: FaultMiddleware(app, emu)],
    )
    control = Router("/_emulator", route_handlers=[add_faults, clear_faults, show_state, configure, reset])
    return Litestar(
        route_handlers=[api, control],
        dependencies={"emu": Provide(lambda: emu, use_cache=True, sync_to_thread=False)},
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
        state=State({"emulator": emu}),
        openapi_config=None,
        logging_config=None,
    )


class FaultMiddleware:
    """Counts each API request, adds the configured latency and applies the first matching fault rule.

    ASGI has no "close the connection" message, so a drop is made with what servers do on a broken
    response: :func:`_drop_connection` starts one the server must refuse to write, and returns.
    """

    def __init__(self, app: ASGIApp, state: EmulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = scope["route_handler"].opt.get("operation") if scope["type"] == ScopeType.HTTP else None
        if operation is None:
            await self.app(scope, receive, send)
            return
        rule = self.state.record_request(operation)
        if latency := self.state.config.latency_seconds:
            await anyio.sleep(latency)
        if rule is None:
            await self.app(scope, receive, send)
        elif rule.kind == "status":
            await _send_fault_status(rule, send)
        elif rule.kind == "delay":
            await anyio.sleep(rule.seconds)
            await self.app(scope, receive, send)
        elif rule.kind == "drop":
            await _drop_connection(send)
        elif rule.kind == "drop_after_commit":
            await self.app(scope, receive, _discard)
            await _drop_connection(send)
        else:  # delay_after_commit
            held: list[Message] = []
            await self.app(scope, receive, _hold(held))
            await anyio.sleep(rule.seconds)
            for message in held:
                await send(message)


async def _send_fault_status(rule: FaultRule, send: Send) -> None:
    status = rule.status or 500
    body = json.dumps({"error": reason_phrase(status), "message": "fault injected by the emulator"})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if (retry_after := rule.retry_after_header()) is not None:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode(), "more_body": False})


async def _drop_connection(send: Send) -> None:
    """Make the ASGI server close the connection without writing a byte of response.

    uvicorn (h11 and httptools alike) marks the response as started, then refuses a header value with a
    line break before writing anything; when the app then returns, it logs "ASGI callable returned
    without completing response" and closes the socket. The client sees the connection closed with no
    answer (httpx: ``RemoteProtocolError: Server disconnected without sending a response``). Raising
    instead would only make the server answer 500. Should a server write the start anyway, the declared
    body never comes and the client still fails reading it.
    """
    headers = [(b"content-length", b"1"), (b"x-emulator-drop", b"\r\n")]
    with contextlib.suppress(Exception):  # the refusal is the point
        await send({"type": "http.response.start", "status": 502, "headers": headers})


async def _discard(message: Message) -> None:
    return None


def _hold(held: list[Message]) -> Send:
    async def send(message: Message) -> None:
        held.append(message)

    return send


def _token_guard(token: str) -> Guard:
    expected = token.encode()

    # async: Litestar runs a plain function guard in a worker thread, a thread hand-off per request
    # that cost the emulator ~15 % of its CPU under the benchmarks (bench/HISTORY.md, seventh round).
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        given = connection.headers.get("x-chroma-token")
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise ApiError(401, "the x-chroma-token header is missing or invalid")

    return guard


async def _json_body(request: AnyRequest) -> object:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise bad_request("the body is not valid JSON") from None


def _query(request: AnyRequest) -> dict[str, str]:
    return dict(request.query_params.items())


def _api_error(_: AnyRequest, exc: ApiError) -> Response[dict[str, str]]:
    return Response(exc.body(), status_code=exc.status)


def _http_error(_: AnyRequest, exc: HTTPException) -> Response[dict[str, str]]:
    error = ApiError(exc.status_code, exc.detail or reason_phrase(exc.status_code))
    return Response(error.body(), status_code=error.status, headers=exc.headers)


def _server_error(_: AnyRequest, exc: Exception) -> Response[dict[str, str]]:
    error = ApiError(500, f"emulator failure: {type(exc).__name__}")
    return Response(error.body(), status_code=500)


# Serving

_ABANDONED = "ASGI callable returned without completing response."


def build_emulator_server(
    *,
    token: str,
    state: EmulatorState | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    http: str = "auto",
) -> uvicorn.Server:
    """A uvicorn server for the emulator that leaves logging configuration to the caller.

    ``http`` picks uvicorn's HTTP implementation (``auto``, ``h11`` or ``httptools``); dropped
    connections behave the same under both.
    """
    config = uvicorn.Config(
        create_emulator_app(token=token, state=state),
        host=host,
        port=port,
        http=http,
        ws="none",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    _quiet_injected_drops()
    return uvicorn.Server(config)


async def serve_emulator(
    *,
    host: str,
    port: int,
    token: str,
    state: EmulatorState | None = None,
    sockets: list[socket.socket] | None = None,
) -> None:
    """Serve the emulator in the running event loop until SIGINT/SIGTERM or the task is cancelled.

    ``sockets`` (already bound) replace ``host``/``port``. On cancellation the listeners are closed at
    once, without uvicorn's graceful shutdown.
    """
    server = build_emulator_server(token=token, state=state, host=host, port=port)
    try:
        await server.serve(sockets=sockets)
    finally:
        for listener in getattr(server, "servers", ()):
            listener.close()


class _InjectedDropFilter(logging.Filter):
    """uvicorn logs an error for each response the fault middleware abandons on purpose: hide those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _ABANDONED


def _quiet_injected_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _InjectedDropFilter) for existing in logger.filters):
        logger.addFilter(_InjectedDropFilter())
