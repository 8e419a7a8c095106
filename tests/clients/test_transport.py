"""The lean httpx transport: real sockets (and real TLS) against small loopback servers and the emulator."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from bridge.clients.sync import SyncClient, SyncTimeout, SyncTransportError
from bridge.clients.transport import LeanTransport, default_transport
from bridge.emulator.testing import RunningEmulator
from tests.conftest import EMULATOR_TOKEN

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'


class Server:
    """A loopback TCP server running ``handler`` per connection; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


@asynccontextmanager
async def running(
    make: Callable[[Server], Handler], *, tls: ssl.SSLContext | None = None
) -> AsyncIterator[Server]:
    server = Server(lambda reader, writer: make(server)(reader, writer))
    tcp = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = tcp.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        tcp.close()
        await tcp.wait_closed()


def answering(*responses: bytes) -> Callable[[Server], Handler]:
    """Each connection answers requests with ``responses`` in turn (the last one repeated)."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            index = 0
            while True:
                await server.read_request(reader)
                writer.write(responses[min(index, len(responses) - 1)])
                await writer.drain()
                index += 1

        return handler

    return make


async def test_keep_alive_reuses_one_connection(anyio_backend: str) -> None:
    """Five requests in a row travel on one connection, bodies and JSON intact."""
    async with running(answering(OK)) as server, httpx.AsyncClient(transport=LeanTransport()) as client:
        for _ in range(5):
            response = await client.post(server.url + "/x?y=1", json={"a": 1})
            assert response.status_code == 200
            assert response.json() == {"ok": True}
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /x?y=1 HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'{"a":1}')
    assert b"content-type: application/json" in server.requests[0].lower()


async def test_chunked_body_is_read_whole(anyio_backend: str) -> None:
    """A chunked answer (as a proxy in front of Sync may send) arrives whole, and the connection stays."""
    chunked = (
        b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n"
        b'5\r\n{"a":\r\n3\r\n42}\r\n0\r\n\r\n'
    )
    async with running(answering(chunked)) as server, httpx.AsyncClient(transport=LeanTransport()) as client:
        first = await client.get(server.url)
        second = await client.get(server.url)
    assert (first.status_code, first.json(), second.json()) == (202, {"a": 42}, {"a": 42})
    assert server.connections == 1


async def test_connection_close_and_close_delimited_bodies_open_a_new_connection(anyio_backend: str) -> None:
    """An answer without a length ends with the connection; ``Connection: close`` is honoured."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            if server.connections == 1:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()

        return handler

    async with running(make) as server, httpx.AsyncClient(transport=LeanTransport()) as client:
        assert (await client.get(server.url)).text == "until the end"
        assert (await client.get(server.url)).text == "ok"
        assert (await client.get(server.url)).text == "ok"
    assert server.connections == 3


async def test_an_idle_connection_past_its_expiry_is_not_reused(anyio_backend: str) -> None:
    """With keepalive_expiry=0 every request opens its own connection."""
    transport = LeanTransport(keepalive_expiry=0)
    async with running(answering(OK)) as server, httpx.AsyncClient(transport=transport) as client:
        await client.get(server.url)
        await client.get(server.url)
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_not_reused(anyio_backend: str) -> None:
    """The server closing an idle keep-alive connection (uvicorn does after 5 s) costs no error."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)
            await writer.drain()  # then return: the server closes the connection

        return handler

    async with running(make) as server, httpx.AsyncClient(transport=LeanTransport()) as client:
        await client.get(server.url)
        await asyncio.sleep(0.05)  # the FIN arrives
        assert (await client.get(server.url)).status_code == 200
    assert server.connections == 2


async def test_server_closing_without_an_answer_is_a_remote_protocol_error(anyio_backend: str) -> None:
    """The request may have been acted on: SyncClient reports the outcome as unknown."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)

        return handler

    async with running(make) as server:
        async with httpx.AsyncClient(transport=LeanTransport()) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(server.url)
        async with SyncClient(base_url=server.url, token="ck-secret-token") as sync:
            with pytest.raises(SyncTransportError) as caught:
                await sync.get_invocation("inv-1")
    assert caught.value.outcome_unknown


async def test_malformed_answer_is_a_remote_protocol_error(anyio_backend: str) -> None:
    """Garbage instead of a status line is refused, not guessed at."""
    garbage = answering(b"NOT HTTP AT ALL\r\n\r\n")
    async with running(garbage) as server, httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
            await client.get(server.url)


async def test_slow_answer_is_a_read_timeout(anyio_backend: str) -> None:
    """No answer within the read timeout raises httpx.ReadTimeout."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(5)

        return handler

    transport = LeanTransport()
    async with running(make) as server, httpx.AsyncClient(transport=transport, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url)


async def test_refused_connection_is_a_connect_error_nothing_sent(anyio_backend: str) -> None:
    """A closed port: ConnectError, which SyncClient reports as certainly not sent."""
    async with running(answering(OK)) as server:
        url = server.url
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(url)
    async with SyncClient(base_url=url, token="ck-secret-token") as sync:
        with pytest.raises(SyncTransportError) as caught:
            await sync.get_invocation("inv-1")
    assert not caught.value.outcome_unknown


async def test_all_connections_busy_is_a_pool_timeout(anyio_backend: str) -> None:
    """With max_connections=1 and that one busy, a second request waits out the pool timeout."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(5)

        return handler

    transport = LeanTransport(max_connections=1)
    timeout = httpx.Timeout(5.0, pool=0.2)
    async with running(make) as server, httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        busy = asyncio.create_task(client.get(server.url))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(server.url)
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy


async def test_other_schemes_are_unsupported(anyio_backend: str) -> None:
    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        with pytest.raises(httpx.UnsupportedProtocol):
            await client.get("ftp://127.0.0.1/x")


async def test_closing_the_transport_closes_idle_connections(anyio_backend: str) -> None:
    """aclose() hangs up the kept connections: the server sees the end of its stream."""
    closed = asyncio.Event()

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(OK)
            await writer.drain()
            assert await reader.read() == b""
            closed.set()

        return handler

    transport = LeanTransport()
    async with running(make) as server:
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(server.url)
        await asyncio.wait_for(closed.wait(), 5)
        with pytest.raises(httpx.ConnectError, match="closed"):
            await transport.handle_async_request(httpx.Request("GET", server.url))


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (real RSA, real X.509)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def test_tls_is_verified(anyio_backend: str, tmp_path: Path) -> None:
    """HTTPS works against a trusted certificate and fails, as a connect error, against an unknown one."""
    cert_path, key_path = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    trusting = ssl.create_default_context(cafile=str(cert_path))
    async with running(answering(OK), tls=server_tls) as server:
        async with httpx.AsyncClient(transport=LeanTransport(ssl_context=trusting)) as client:
            assert (await client.get(server.url)).json() == {"ok": True}
            assert (await client.get(server.url)).json() == {"ok": True}
        assert server.connections == 1
        async with httpx.AsyncClient(transport=LeanTransport()) as client:  # certifi, as httpx
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(server.url)


async def test_sync_client_speaks_to_the_emulator_over_the_lean_transport(
    anyio_backend: str, emulator: RunningEmulator
) -> None:
    """The default SyncClient, end to end over loopback HTTP: create a source and an invocation, read it."""
    assert isinstance(default_transport(), LeanTransport)
    async with SyncClient(base_url=emulator.base_url, token=EMULATOR_TOKEN) as sync:
        source_id = await sync.create_source(database_name="code", repository="acme/lean", app_id="7")
        invocation_id = await sync.create_invocation(source_id, collection="lean-main-1", sha="a" * 40)
        for _ in range(3):
            invocation = await sync.get_invocation(invocation_id)
            assert invocation.id == invocation_id


def test_proxy_settings_keep_httpx_s_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx honours HTTPS_PROXY and friends; the lean transport does not, so it steps aside."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(default_transport(), LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert default_transport() is None


async def test_the_default_sync_client_calls_its_transport_with_its_own_headers_and_timeout(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SyncClient skips httpx.AsyncClient's layers for its own lean transport: the request that goes out
    carries exactly the client's headers (and the JSON body's), and the client's timeout still holds."""
    called: list[str] = []
    client_request = httpx.AsyncClient.request

    async def counting(self: httpx.AsyncClient, *args: object, **kwargs: object) -> httpx.Response:
        called.append("client")
        return await client_request(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.AsyncClient, "request", counting)
    created = b'{"invocation_id": "inv-1"}'
    answer = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(created),
        created,
    )
    async with (
        running(answering(answer)) as server,
        SyncClient(base_url=server.url, token="ck-secret-token") as sync,
    ):
        assert await sync.create_invocation("src-1", collection="c-1", sha="a" * 40) == "inv-1"
    assert called == []  # never through the client
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    request_line, *lines = head.decode().split("\r\n")
    assert request_line == "POST /api/v1/sources/src-1/invocations HTTP/1.1"
    names = sorted(line.partition(":")[0].lower() for line in lines)
    assert names == ["accept", "content-length", "content-type", "host", "user-agent", "x-chroma-token"]
    assert b'"sha":"' + b"a" * 40 in body.replace(b" ", b"")

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            await asyncio.sleep(5)

        return handler

    async with (
        running(make) as server,
        SyncClient(base_url=server.url, token="ck-secret-token", timeout=0.2) as sync,
    ):
        started = asyncio.get_running_loop().time()
        with pytest.raises(SyncTimeout) as caught:
            await sync.get_invocation("inv-1")
        assert asyncio.get_running_loop().time() - started < 2
    assert caught.value.outcome_unknown
