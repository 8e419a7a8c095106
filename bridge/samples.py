"""Sample push payloads, shaped like GitHub's, for ``bridge send-push``, tests and benchmarks."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from bridge.core.events import ZERO_SHA

ZERO = ZERO_SHA  # a new branch's before, a deleted one's after


def fake_sha(seed: str) -> str:
    """A deterministic 40-hex commit id for ``seed``."""
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


def push_payload(
    *,
    repository: str = "acme/demo",
    branch: str = "main",
    before: str = ZERO,
    after: str | None = None,
    repository_id: int = 4242,
    default_branch: str = "main",
    installation_id: int | None = 1729,
    pushed_at: int | None = None,
    commits: int = 1,
) -> dict[str, Any]:
    """A push payload with the fields GitHub sends; ``commits`` pads it to a realistic size."""
    after = after or fake_sha(f"{repository}:{branch}:{time.time_ns()}")
    owner, name = repository.split("/", 1)
    user = {"name": owner, "email": f"{owner}@example.com", "login": owner, "id": 1, "type": "User"}
    commit_list = [
        {
            "id": fake_sha(f"{after}:{i}") if i < commits - 1 else after,
            "tree_id": fake_sha(f"tree:{after}:{i}"),
            "distinct": True,
            "message": f"Change number {i} to {name}\n\nA longer body that explains the change.",
            "timestamp": "2026-11-23T12:00:00Z",
            "url": f"https://github.com/{repository}/commit/{after}",
            "author": {"name": owner, "email": f"{owner}@example.com", "username": owner},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
            "added": [f"src/new_{i}.py"],
            "removed": [],
            "modified": ["README.md", f"src/module_{i}.py"],
        }
        for i in range(commits)
    ]
    payload: dict[str, Any] = {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": after,
        "created": before == ZERO,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/{repository}/compare/{before[:12]}...{after[:12]}",
        "commits": commit_list,
        "head_commit": commit_list[-1] if commit_list else None,
        "repository": {
            "id": repository_id,
            "node_id": "R_kgDOExample",
            "name": name,
            "full_name": repository,
            "private": True,
            "owner": user,
            "html_url": f"https://github.com/{repository}",
            "default_branch": default_branch,
            "master_branch": default_branch,
            "created_at": 1700000000,
            "pushed_at": pushed_at if pushed_at is not None else int(time.time()),
        },
        "pusher": {"name": owner, "email": f"{owner}@example.com"},
        "sender": user,
    }
    if installation_id is not None:
        payload["installation"] = {"id": installation_id, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9u"}
    return payload


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
