"""Deliveries and jobs for store tests, with every field filled and the interesting ones as arguments."""

from __future__ import annotations

from typing import Any

from bridge.core.jobs import DeliveryRecord, NewJob

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40


def delivery(
    delivery_id: str = "d-1", *, hook_id: str = "hook-1", received_at: float = 100.0
) -> DeliveryRecord:
    return DeliveryRecord(
        hook_id=hook_id,
        delivery_id=delivery_id,
        event="push",
        repository="acme/api",
        ref="refs/heads/main",
        after=SHA_B,
        received_at=received_at,
    )


def new_job(lane: str = "lane-1", *, due_at: float = 100.0, after: str = SHA_B, **changes: Any) -> NewJob:
    values: dict[str, Any] = {
        "lane": lane,
        "route": "route-0",
        "source_key": "src-1",
        "source_id": "5d6c1f0e-0000-4000-8000-000000000001",
        "source_spec": None,
        "repository": "acme/api",
        "repository_id": 1296269,
        "branch": "main",
        "before": SHA_A,
        "after": after,
        "pushed_at": 1_700_000_000,
        "collection": f"acme-api-main-{after[:12]}",
        "due_at": due_at,
    }
    values.update(changes)
    return NewJob(**values)
