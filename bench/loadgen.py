"""An open-loop HTTP/1.1 load generator: requests at a fixed rate, latency from the *scheduled* time.

wrk keeps 32 requests in flight and sends the next one when an answer comes (closed loop): it finds
the saturation point, but a slow answer delays the requests behind it, so it cannot say what latency a
steady 1,000 deliveries per second sees. wrk2 (which fixes that) is not packaged in Debian, so this is
the small stand-in: request ``k`` is due at ``start + k / rate``; it goes out on an idle keep-alive
connection (a new one is opened when none is idle, as GitHub's senders would), and its latency is
measured from when it was due, so a stall counts against every request it held up (no coordinated
omission). Requests are pre-built bytes; per request only the delivery id is spliced in.

    .venv/bin/python bench/loadgen.py URL BODIES_FILE --rate 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class OpenLoopResult:
    offered_rps: float
    achieved_rps: float
    sent: int
    ok: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    connections: int
    error_kinds: dict[str, int] = field(default_factory=dict)  # exception name or HTTP status
    # How late this generator itself wrote each request (from its due time): the part of the latency
    # spent before the request left, when the generator waited for a CPU the server was using.
    send_lag_p50_ms: float = float("nan")
    send_lag_p99_ms: float = float("nan")


def read_bodies(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        sig_end = data.index(b"\n", pos)
        len_end = data.index(b"\n", sig_end + 1)
        length = int(data[sig_end + 1 : len_end])
        out.append((data[pos:sig_end].decode(), data[len_end + 1 : len_end + 1 + length]))
        pos = len_end + 1 + length
    return out


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def roundtrip(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def open_loop(
    url: str, bodies: Sequence[tuple[str, bytes]], *, rate: float, seconds: float, run_id: str,
    warm_connections: int = 32,
) -> OpenLoopResult:  # fmt: skip
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path or "/"
    templates = [
        (
            (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
                f"Content-Type: application/json\r\nX-GitHub-Event: push\r\nX-GitHub-Hook-ID: 1\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\nX-GitHub-Delivery: "
            ).encode(),
            b"\r\n\r\n" + body,
        )
        for signature, body in bodies
    ]
    idle: list[_Conn] = []
    opened = 0

    async def connect() -> _Conn:
        nonlocal opened
        reader, writer = await asyncio.open_connection(host, port)
        opened += 1
        return _Conn(reader, writer)

    idle += [await connect() for _ in range(warm_connections)]

    latencies: list[float] = []
    send_lags: list[float] = []
    errors = 0
    ok = 0
    kinds: dict[str, int] = {}

    async def one(index: int, due: float) -> None:
        nonlocal errors, ok
        prefix, suffix = templates[index % len(templates)]
        request = prefix + f"{run_id}-{index}".encode() + suffix
        conn = idle.pop() if idle else None
        send_lags.append(time.perf_counter() - due)
        try:
            if conn is None:
                conn = await connect()
                status = await conn.roundtrip(request)
            else:
                try:
                    status = await conn.roundtrip(request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # The keep-alive race: the server closed this idle connection (uvicorn's keep-alive
                    # timeout is 5 s) as the request went out. Retried once on a new connection, as HTTP
                    # clients do; the retry's time counts in the latency.
                    conn.writer.close()
                    kinds["stale_connection_retried"] = kinds.get("stale_connection_retried", 0) + 1
                    conn = await connect()
                    status = await conn.roundtrip(request)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors += 1
            kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn.writer.close()
            return
        latencies.append(time.perf_counter() - due)
        if 200 <= status < 300:
            ok += 1
        else:
            errors += 1
            kinds[str(status)] = kinds.get(str(status), 0) + 1
        idle.append(conn)

    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter() + 0.05  # uvloop's loop.time() has millisecond resolution
    for index in range(total):
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    elapsed = time.perf_counter() - started
    for conn in idle:
        conn.writer.close()
    ordered = sorted(latencies)
    lags = sorted(send_lags)
    ms = 1e3
    return OpenLoopResult(
        offered_rps=rate,
        achieved_rps=len(latencies) / elapsed if elapsed > 0 else 0.0,
        sent=total,
        ok=ok,
        errors=errors,
        p50_ms=_quantile(ordered, 0.50) * ms,
        p90_ms=_quantile(ordered, 0.90) * ms,
        p99_ms=_quantile(ordered, 0.99) * ms,
        p999_ms=_quantile(ordered, 0.999) * ms,
        max_ms=(ordered[-1] if ordered else float("nan")) * ms,
        connections=opened,
        error_kinds=kinds,
        send_lag_p50_ms=_quantile(lags, 0.50) * ms,
        send_lag_p99_ms=_quantile(lags, 0.99) * ms,
    )


def run_open_loop(url: str, bodies_file: Path, *, rate: float, seconds: float, run_id: str) -> OpenLoopResult:
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        runner = asyncio.run
    bodies = read_bodies(bodies_file)
    return runner(open_loop(url, bodies, rate=rate, seconds=seconds, run_id=run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("bodies", type=Path)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--run-id", default=f"ol{int(time.time())}")
    args = parser.parse_args()
    result = run_open_loop(args.url, args.bodies, rate=args.rate, seconds=args.seconds, run_id=args.run_id)
    print(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
