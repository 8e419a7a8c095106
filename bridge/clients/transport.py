"""A lean HTTP/1.1 transport for httpx: asyncio streams and httptools' parser, keep-alive pooled.

``SyncClient`` still speaks httpx (requests, responses, timeouts, exceptions); only the layer below
``httpx.AsyncClient`` is replaced. Why hand-written: profiling the worker under load
(``bench/HISTORY.md``, fourth round) put 40 % of its Python time in the Sync client, and on this
machine one request through httpx's default transport (httpcore, anyio, h11) cost 0.9 ms of CPU out of
1.4 ms, against under 0.1 ms for the same request written to an asyncio stream. The part that is easy
to get wrong, parsing the response (chunked bodies, keep-alive), is left to httptools (llhttp, the
parser uvicorn uses); what remains here is a pool of connections per origin and the mapping of every
failure to the httpx exception httpcore would raise, so callers cannot tell the two apart:

* ``ConnectError`` / ``ConnectTimeout`` / ``PoolTimeout``: nothing was sent;
* ``WriteError`` / ``WriteTimeout`` / ``ReadError`` / ``ReadTimeout`` / ``RemoteProtocolError``: the
  request may have reached the server (``SyncClient`` then treats the outcome as unknown).

Scope: HTTP/1.1 over TCP or TLS (``httpx.create_ssl_context()``, as httpx verifies), bodies read
whole (Sync's answers are small JSON documents), no proxies: :func:`default_transport` returns None
when proxy variables are set so that httpx's own transport, which honours them, is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import httptools
import httpx

_EXPIRY: Final = 5.0  # seconds an idle connection is kept, as httpx's default
_CHUNK: Final = 65_536


@dataclass(eq=False, slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float, expiry: float) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof() and now - self.idle_since < expiry

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass(slots=True)
class _Parsed:
    """What httptools reports while a response streams in."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    headers_done: bool = False
    complete: bool = False
    keep_alive: bool = False
    parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Asked now: llhttp resets its flags once the message is complete.
        self.keep_alive = self.parser is not None and self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def delimited(self) -> bool:
        """Whether the body's end is marked (a length or chunks) rather than the connection closing."""
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" in names or b"transfer-encoding" in names


def _timeout(request: httpx.Request, kind: str) -> float | None:
    value = request.extensions.get("timeout", {}).get(kind)
    return float(value) if value is not None else None


class LeanTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over asyncio streams; see the module's docstring."""

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = _EXPIRY,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._expiry = keepalive_expiry
        self._ssl = ssl_context
        self._open: set[_Connection] = set()
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}", request=request)
        if self._closed:
            raise httpx.ConnectError("the transport is closed", request=request)
        try:
            async with asyncio.timeout(_timeout(request, "pool")):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout("no connection slot became free in time", request=request) from None
        try:
            return await self._exchange(request)
        finally:
            self._slots.release()

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        origin = (url.scheme, url.host, port)
        connection = self._idle_connection(origin)
        if connection is None:
            connection = await self._connect(request, url.scheme, url.host, port)
        self._open.add(connection)
        reuse = False
        try:
            await self._send(request, connection)
            response, reuse = await self._receive(request, connection)
        finally:
            self._open.discard(connection)
            if reuse and not self._closed:
                connection.idle_since = time.monotonic()
                self._idle.setdefault(origin, deque()).append(connection)
            else:
                connection.close()
        return response

    def _idle_connection(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to have timed out
            if connection.usable(now, self._expiry):
                return connection
            connection.close()
        return None

    async def _connect(self, request: httpx.Request, scheme: str, host: str, port: int) -> _Connection:
        context = None
        if scheme == "https":
            context = self._ssl if self._ssl is not None else httpx.create_ssl_context()
            self._ssl = context
        try:
            async with asyncio.timeout(_timeout(request, "connect")):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, server_hostname=host if context else None, limit=_CHUNK
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}", request=request) from None
        return _Connection(reader, writer)

    async def _send(self, request: httpx.Request, connection: _Connection) -> None:
        body = await request.aread()
        target = request.url.raw_path
        lines = [request.method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        connection.writer.write(b"".join(lines) + body)
        try:
            async with asyncio.timeout(_timeout(request, "write")):
                await connection.writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from None
        except OSError as exc:
            raise httpx.WriteError(f"{type(exc).__name__}: {exc}", request=request) from None

    async def _receive(self, request: httpx.Request, connection: _Connection) -> tuple[httpx.Response, bool]:
        parsed = _Parsed()
        parser = parsed.parser = httptools.HttpResponseParser(parsed)
        read_timeout = _timeout(request, "read")
        while not parsed.complete:
            try:
                async with asyncio.timeout(read_timeout):
                    data = await connection.reader.read(_CHUNK)
            except TimeoutError:
                raise httpx.ReadTimeout("waiting for the response timed out", request=request) from None
            except OSError as exc:
                raise httpx.ReadError(f"{type(exc).__name__}: {exc}", request=request) from None
            if not data:
                if parsed.headers_done and not parsed.delimited():
                    break  # a body that ends with the connection: complete, not reusable
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a complete response", request=request
                )
            try:
                parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                raise httpx.RemoteProtocolError("unexpected protocol upgrade", request=request) from None
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(f"malformed response: {exc}", request=request) from None
        reuse = parsed.complete and parsed.keep_alive and not connection.reader.at_eof()
        response = httpx.Response(
            parser.get_status_code(),
            headers=parsed.headers,
            content=b"".join(parsed.body),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )
        return response, reuse

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        for connection in list(self._open):
            connection.close()


def default_transport() -> LeanTransport | None:
    """The transport ``SyncClient`` uses by default: None (httpx's own) when a proxy is configured."""
    if urllib.request.getproxies():
        return None
    return LeanTransport()
