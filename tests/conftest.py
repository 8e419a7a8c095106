"""Fixtures shared by every test folder: the async backend and the recorded GitHub payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as the service does."""
    return "asyncio"


def load_payload(name: str) -> dict[str, Any]:
    """A recorded GitHub payload from ``tests/data/github`` (e.g. ``captured/probot/push.json``)."""
    data: dict[str, Any] = json.loads((DATA / "github" / name).read_text())
    return data


@pytest.fixture
def payload_dir() -> Path:
    return DATA / "github"
