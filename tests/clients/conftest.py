"""A recording fake Sync server for httpx.MockTransport, and the recorded response shapes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.clients.sync import SyncClient

SAMPLES = Path(__file__).parent / "data" / "sync"
BASE_URL = "https://sync.example.test"
TOKEN = "ck-test-0123456789abcdef-secret"


def sample(name: str) -> Any:
    """A recorded-shape Sync response body from ``data/sync``."""
    return json.loads((SAMPLES / name).read_text())


class FakeSync:
    """Answers queued responses (or raises queued transport errors) and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self._answers: list[httpx.Response | Exception] = []

    def answer(
        self,
        status: int = 200,
        body: Any = None,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if text is not None:
            self._answers.append(httpx.Response(status, text=text, headers=headers))
        elif body is None:
            self._answers.append(httpx.Response(status, headers=headers))
        else:
            self._answers.append(httpx.Response(status, json=body, headers=headers))

    def fail(self, error: Exception) -> None:
        self._answers.append(error)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self._answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]

    def last_json(self) -> Any:
        return json.loads(self.last.content)


@pytest.fixture
def fake() -> FakeSync:
    return FakeSync()


@pytest.fixture
async def sync(fake: FakeSync) -> AsyncIterator[SyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        yield SyncClient(base_url=BASE_URL, token=TOKEN, client=http)
