"""An ingress under test: the real app and a real SQLite store, the worker off (no Sync calls)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from bridge.clients.sync import SyncClient
from bridge.core.signature import sign
from bridge.http.app import create_app
from bridge.routes_file import parse_routes_text
from bridge.service import Service
from bridge.settings import Settings
from bridge.store.sqlite import SqliteStore

SECRET = "s3cret-for-tests"
SOURCE_ID = "5d6c1f0e-0000-4000-8000-000000000001"
ROUTES = f"""
routes:
  - repository: bkeepers-inc/test
    branches: ["**"]
    source_id: {SOURCE_ID}
  - repository: "acme/*"
    branches: ["main", "release/*"]
    source_id: {SOURCE_ID}
  - repository: acme/api
    branches: ["main"]
    source:
      database_name: code
"""


def signed_headers(
    body: bytes,
    *,
    event: str = "push",
    delivery: str | None = None,
    hook: str = "1",
    secret: str = SECRET,
    content_type: str = "application/json",
) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": hook,
        "X-Hub-Signature-256": sign(body, secret.encode()),
        "User-Agent": "GitHub-Hookshot/test",
    }


@dataclass
class Ingress:
    client: AsyncTestClient[Any]
    store: SqliteStore
    service: Service

    async def post(self, body: bytes, headers: dict[str, str]) -> Any:
        return await self.client.post("/webhooks/github", content=body, headers=headers)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "webhook_secret": SECRET,
            "sync_token": "token-for-tests",
            "sync_url": "http://127.0.0.1:9",
            "database_url": f"sqlite:///{tmp_path / 'bridge.db'}",
            "worker": "off",
            **overrides,
        }
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture
async def ingress(tmp_path: Path, make_settings: Callable[..., Settings]) -> AsyncIterator[Ingress]:
    settings = make_settings()
    store = SqliteStore(tmp_path / "bridge.db")
    service = Service(
        settings=settings,
        routes=parse_routes_text(ROUTES),
        store=store,
        sync=SyncClient(base_url=settings.sync_url, token="token-for-tests"),
    )
    async with AsyncTestClient(app=create_app(service)) as client:
        yield Ingress(client=client, store=store, service=service)
