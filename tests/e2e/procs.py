"""Real processes for end-to-end tests: ``bridge emulator`` and ``bridge serve`` on loopback ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bridge.core.signature import sign
from bridge.samples import encode, push_payload

BRIDGE = [sys.executable, "-m", "bridge"]
SECRET = "e2e-webhook-secret"
TOKEN = "e2e-sync-token"


def child_pids(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux ``/proc``); none once ``pid`` is gone."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@dataclass
class Emulator:
    url: str
    proc: subprocess.Popen[bytes]

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/_emulator/state", timeout=5).json()
        return data

    def faults(self, rules: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/_emulator/faults", json=rules, timeout=5).raise_for_status()

    def clear_faults(self) -> None:
        httpx.delete(f"{self.url}/_emulator/faults", timeout=5).raise_for_status()

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_emulator/config", json=changes, timeout=5).raise_for_status()

    def reset(self) -> None:
        """Forget sources, invocations, faults and counters (the configuration stays)."""
        httpx.post(f"{self.url}/_emulator/reset", timeout=5).raise_for_status()

    def invocations(self) -> list[dict[str, Any]]:
        return list(self.state()["invocations"])

    def requests(self, operation: str) -> int:
        """Requests ``operation`` has received so far, faulted ones included."""
        return int(self.state()["counters"].get(operation, 0))

    def add_source(self, repository: str, database_name: str = "code") -> str:
        body = {"database_name": database_name, "embedding_model": "Qwen/Qwen3-Embedding-0.6B",
                "github": {"repository": repository}}  # fmt: skip
        response = httpx.post(f"{self.url}/api/v1/sources", json=body, headers={"x-chroma-token": TOKEN})
        response.raise_for_status()
        return str(response.json()["source_id"])


@contextmanager
def emulator_process(tmp: Path) -> Iterator[Emulator]:
    port = free_port()
    log = (tmp / f"emulator-{port}.log").open("wb")
    proc = subprocess.Popen(
        [*BRIDGE, "emulator", "--port", str(port), "--token", TOKEN], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_emulator/state", proc=proc)
        yield Emulator(url=url, proc=proc)
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@dataclass
class Bridge:
    env: dict[str, str]
    tmp: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"bridge-{self.port}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*BRIDGE, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_http(f"{self.url}/readyz", proc=self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self, *, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def bridge_env(tmp: Path, *, sync_url: str, routes: str, database_url: str | None = None,
               **extra: str) -> dict[str, str]:  # fmt: skip
    routes_file = tmp / "routes.yaml"
    routes_file.write_text(routes)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        BRIDGE_WEBHOOK_SECRET=SECRET,
        BRIDGE_SYNC_URL=sync_url,
        BRIDGE_SYNC_TOKEN=TOKEN,
        BRIDGE_SYNC_TIMEOUT="2",
        BRIDGE_DATABASE_URL=database_url or f"sqlite:///{tmp / 'bridge.db'}",
        BRIDGE_ROUTES_FILE=str(routes_file),
        BRIDGE_LOG_FORMAT="json",
        BRIDGE_POLL_INTERVAL_SECONDS="0.2",
        BRIDGE_TRACK_MIN_SECONDS="0.5",
        BRIDGE_TRACK_MAX_SECONDS="2",
        BRIDGE_RETRY_BASE_SECONDS="0.2",
        BRIDGE_RETRY_CAP_SECONDS="2",
        BRIDGE_SHUTDOWN_TIMEOUT="5",
    )
    env.update(extra)  # may override any of the above
    return env


def signed(body: bytes, *, event: str = "push", delivery: str | None = None, secret: str = SECRET,
           hook: str = "1") -> dict[str, str]:  # fmt: skip
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/e2e",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": hook,
        "X-Hub-Signature-256": sign(body, secret.encode()),
    }


def send_push(url: str, *, client: httpx.Client | None = None, delivery: str | None = None,
              **payload: Any) -> httpx.Response:  # fmt: skip
    body = encode(push_payload(**payload))
    poster: Any = client or httpx
    response: httpx.Response = poster.post(
        f"{url}/webhooks/github", content=body, headers=signed(body, delivery=delivery), timeout=10
    )
    return response


def query_store(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on a bridge's SQLite file; safe beside the running bridge (WAL)."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return list(db.execute(sql, params).fetchall())


def wait_until(predicate: Any, *, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError("condition not met in time")
