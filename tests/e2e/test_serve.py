"""`bridge serve` as a real process against a Sync API in another process (the emulator as a stand-in)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridge.samples import encode, fake_sha
from tests.conftest import load_payload
from tests.e2e.procs import (
    SECRET,
    TOKEN,
    Bridge,
    Emulator,
    bridge_env,
    child_pids,
    emulator_process,
    send_push,
    signed,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Bridge, Emulator]]:
    tmp = tmp_path_factory.mktemp("serve")
    with emulator_process(tmp) as emulator:
        source = emulator.add_source("acme/api")
        routes = f'routes:\n  - repository: "acme/*"\n    branches: ["**"]\n    source_id: {source}\n'
        bridge = Bridge(env=bridge_env(tmp, sync_url=emulator.url, routes=routes), tmp=tmp)
        bridge.start()
        try:
            yield bridge, emulator
        finally:
            if bridge.proc is not None and bridge.proc.poll() is None:
                bridge.kill()


def invocations_for(emulator: Emulator, sha: str) -> list[dict[str, object]]:
    return [i for i in emulator.state()["invocations"] if i["sha"] == sha]


def test_push_becomes_an_invocation(running: tuple[Bridge, Emulator]) -> None:
    """A signed push to a routed branch becomes one invocation of exactly that commit."""
    bridge, emulator = running
    sha = fake_sha("e2e-1")
    response = send_push(bridge.url, repository="acme/api", branch="feature/x", after=sha)
    assert response.status_code == 202
    wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=10)
    [invocation] = invocations_for(emulator, sha)
    assert str(invocation["collection"]).startswith("acme-api-feature-x")


def test_redelivery_creates_nothing(running: tuple[Bridge, Emulator]) -> None:
    """The same delivery GUID again is answered duplicate and makes no second invocation."""
    bridge, emulator = running
    sha = fake_sha("e2e-2")
    first = send_push(bridge.url, repository="acme/api", branch="main", after=sha, delivery="dup-1")
    again = send_push(bridge.url, repository="acme/api", branch="main", after=sha, delivery="dup-1")
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=10)


def test_newer_push_cancels_the_older_one(running: tuple[Bridge, Emulator]) -> None:
    """Two pushes to one branch end with the older invocation cancelled (or never created)."""
    bridge, emulator = running
    emulator.configure(pending_seconds=30)
    try:
        a, b = fake_sha("e2e-3a"), fake_sha("e2e-3b")
        send_push(bridge.url, repository="acme/api", branch="topic", after=a, before="0" * 40)
        wait_until(lambda: len(invocations_for(emulator, a)) == 1, timeout=10)
        send_push(bridge.url, repository="acme/api", branch="topic", after=b, before=a)
        wait_until(lambda: [i["status"] for i in invocations_for(emulator, a)] == ["cancelled"], timeout=10)
        assert [i["status"] for i in invocations_for(emulator, b)] == ["pending"]
    finally:
        emulator.configure(pending_seconds=1)


def test_injected_sync_failures_are_retried(running: tuple[Bridge, Emulator]) -> None:
    """503s and a dropped connection on create still end in exactly one invocation."""
    bridge, emulator = running
    emulator.faults(
        [
            {"operation": "create_invocation", "kind": "status", "status": 503, "times": 2},
            {"operation": "create_invocation", "kind": "drop_after_commit", "times": 1},
        ]
    )
    sha = fake_sha("e2e-4")
    send_push(bridge.url, repository="acme/api", branch="flaky", after=sha)
    wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=20)
    wait_until(lambda: emulator.state()["faults"] == [], timeout=5)
    assert len(invocations_for(emulator, sha)) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("push/with-installation.payload.json", "ignored"),
        ("captured/githubkit/push.json", "ignored"),
        ("push/with-no-username-committer.payload.json", "ignored"),
    ],
)
def test_real_payloads_that_index_nothing(running: tuple[Bridge, Emulator], name: str, expected: str) -> None:
    """Tag deletions, branch deletions and unrouted repositories are acknowledged and ignored."""
    bridge, _ = running
    body = encode(load_payload(name))
    response = httpx.post(f"{bridge.url}/webhooks/github", content=body, headers=signed(body))
    assert (response.status_code, response.json()["status"]) == (202, expected)


def test_bad_signature_is_401_and_logged_without_the_secret(running: tuple[Bridge, Emulator]) -> None:
    """A wrong signature is 401 with a JSON reason; the log line names the reason, never the secret."""
    bridge, _ = running
    body = encode(load_payload("captured/probot/push.json"))
    response = httpx.post(f"{bridge.url}/webhooks/github", content=body, headers=signed(body, secret="nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "signature_mismatch"
    logs = bridge.logs()
    assert SECRET not in logs
    assert TOKEN not in logs
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e["event"] == "delivery.rejected" and e["reason"] == "signature_mismatch" for e in events)


def test_at_info_a_push_is_logged_by_its_invocation_not_its_delivery(
    running: tuple[Bridge, Emulator],
) -> None:
    """At the default level the ingress writes no line per routine delivery (it is counted in /metrics
    and answered to GitHub); the worker's ``invocation.created`` names the delivery and its commit."""
    bridge, emulator = running
    sha = fake_sha("e2e-quiet")
    response = send_push(bridge.url, repository="acme/api", branch="quiet", after=sha, delivery="quiet-1")
    assert response.json()["status"] == "accepted"
    wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=10)

    def events() -> list[dict[str, object]]:
        return [json.loads(line) for line in bridge.logs().splitlines() if line.startswith("{")]

    wait_until(lambda: any(e["event"] == "invocation.created" and e.get("sha") == sha for e in events()))
    [created] = [e for e in events() if e["event"] == "invocation.created" and e.get("sha") == sha]
    assert (created["delivery_id"], created["repository"], created["branch"]) == (
        "quiet-1",
        "acme/api",
        "quiet",
    )
    ingress = [e for e in events() if str(e["event"]).startswith("delivery.")]
    assert not [e for e in ingress if e.get("delivery_id") == "quiet-1"]
    metrics = httpx.get(f"{bridge.url}/metrics").text
    assert 'bridge_deliveries_total{outcome="accepted",reason="routed"}' in metrics


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_metrics_and_readiness_cover_the_worker_process(running: tuple[Bridge, Emulator]) -> None:
    """/metrics renders the ingress's and the worker process's families, each once; /readyz names it."""
    bridge, emulator = running
    sha = fake_sha("e2e-metrics")
    send_push(bridge.url, repository="acme/api", branch="metrics", after=sha)
    wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=10)
    text = httpx.get(f"{bridge.url}/metrics").text
    families = ("bridge_deliveries_total", "bridge_sync_calls_total", "bridge_push_to_invocation_seconds")
    for family in (*families, "bridge_jobs", "bridge_worker_restarts_total"):
        assert text.count(f"# HELP {family} ") == 1, family
    assert 'bridge_sync_calls_total{operation="create_invocation",outcome="ok"}' in text
    ready = httpx.get(f"{bridge.url}/readyz").json()
    assert ready["checks"]["worker"] == "process running"


def test_sigterm_exits_cleanly(running: tuple[Bridge, Emulator]) -> None:
    """SIGTERM stops the service, its worker process included, with exit status 0."""
    bridge, _ = running
    assert bridge.proc is not None
    [worker] = child_pids(bridge.proc.pid)
    assert bridge.terminate(timeout=15) == 0
    assert "service.stopped" in bridge.logs()
    assert "worker_process.stopped" in bridge.logs()
    assert not alive(worker)


def test_a_killed_bridge_takes_its_worker_process_along(tmp_path: Path) -> None:
    """SIGKILL of the ingress leaves no worker process behind holding the database (PR_SET_PDEATHSIG)."""
    with emulator_process(tmp_path) as emulator:
        bridge = Bridge(env=bridge_env(tmp_path, sync_url=emulator.url, routes="routes: []\n"), tmp=tmp_path)
        bridge.start()
        assert bridge.proc is not None
        [worker] = child_pids(bridge.proc.pid)
        assert alive(worker)
        bridge.kill()
        wait_until(lambda: not alive(worker), timeout=5)


def test_missing_secret_refuses_to_start(tmp_path: Path) -> None:
    """Without BRIDGE_WEBHOOK_SECRET the service does not start, and says why."""
    import subprocess
    import sys

    env = bridge_env(tmp_path, sync_url="http://127.0.0.1:9", routes="routes: []\n")
    del env["BRIDGE_WEBHOOK_SECRET"]
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--port", "1"], env=env, capture_output=True, timeout=30
    )
    assert done.returncode == 2
    assert b"BRIDGE_WEBHOOK_SECRET" in done.stderr


def test_start_up_calls_the_sync_api_not_once_per_route(tmp_path: Path) -> None:
    """Issue 6: with many routes (described sources and source ids, exact names and globs), `bridge
    serve` becomes ready without one Sync call; a described source is found on its first push only."""
    with emulator_process(tmp_path) as emulator:
        source = emulator.add_source("acme/api")
        lines = ["routes:"]
        for k in range(200):
            lines += [f"  - repository: org-{k}/repo-{k}", f"    source_id: {source}"]
            lines += [f'  - repository: "team-{k}/*"', "    source:", f"      database_name: db-{k}"]
        env = bridge_env(tmp_path, sync_url=emulator.url, routes="\n".join(lines) + "\n")
        bridge = Bridge(env=env, tmp=tmp_path)
        bridge.start()
        try:
            assert httpx.get(f"{bridge.url}/readyz", timeout=5).status_code == 200
            before = dict(emulator.state()["counters"])
            assert before == {"create_source": 1}  # the test's own add_source above, nothing of the bridge
            sha = fake_sha("e2e-startup")
            assert send_push(bridge.url, repository="team-7/web", branch="main", after=sha).status_code == 202
            wait_until(lambda: len(invocations_for(emulator, sha)) == 1, timeout=15)
            after = dict(emulator.state()["counters"])
            assert after.get("list_sources", 0) == 1  # db-7's lookup, for the one route pushed to
            assert after.get("create_invocation", 0) == 1
        finally:
            assert bridge.terminate() == 0
