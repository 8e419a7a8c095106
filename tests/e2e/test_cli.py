"""The `bridge` commands as a user runs them: dev, send-push, check, migrate, --help."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import BRIDGE, TOKEN, bridge_env, emulator_process, free_port, wait_http, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BRIDGE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", ["serve", "dev", "check", "send-push", "migrate", "jobs", "emulator"])
def test_every_command_has_help(command: str) -> None:
    """Each command explains itself with --help."""
    done = run([command, "--help"])
    assert done.returncode == 0
    assert "usage: bridge" in done.stdout


def test_dev_then_send_push_indexes_a_commit(tmp_path: Path) -> None:
    """`bridge dev` runs on embedded defaults and `bridge send-push` makes an invocation in its emulator;
    its log shows each delivery (``dev`` logs at debug unless BRIDGE_LOG_LEVEL says otherwise)."""
    port, emulator_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*BRIDGE, "dev", "--port", str(port), "--emulator-port", str(emulator_port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc=proc)
        sent = run(
            ["send-push", "--url", f"http://127.0.0.1:{port}/webhooks/github", "--secret-file",
             str(tmp_path / ".bridge-dev" / "webhook-secret"), "--repo", "acme/api", "--after", "a" * 40],
            env=env,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("202 ")

        def created() -> bool:
            state = httpx.get(f"http://127.0.0.1:{emulator_port}/_emulator/state").json()
            return any(i["sha"] == "a" * 40 for i in state["invocations"])

        wait_until(created, timeout=15)
        assert (tmp_path / ".bridge-dev" / "bridge.db").exists()
        wait_until(lambda: "delivery.accepted" in log.read_text(errors="replace"), timeout=10)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)


def test_send_push_with_a_wrong_secret_reports_401(tmp_path: Path) -> None:
    """send-push exits non-zero and prints the bridge's 401 answer."""
    with emulator_process(tmp_path) as emulator:
        env = bridge_env(tmp_path, sync_url=emulator.url, routes="routes: []\n")
        port = free_port()
        proc = subprocess.Popen([*BRIDGE, "serve", "--port", str(port)], env=env, stderr=subprocess.DEVNULL)
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
            sent = run(
                ["send-push", "--url", f"http://127.0.0.1:{port}/webhooks/github", "--secret", "wrong"]
            )
            assert sent.returncode == 1
            assert sent.stdout.startswith("401 ")
        finally:
            proc.kill()
            proc.wait(10)


def test_check_passes_with_existing_sources(tmp_path: Path) -> None:
    """`bridge check` reports each route's source and exits 0 when everything resolves."""
    with emulator_process(tmp_path) as emulator:
        source = emulator.add_source("acme/api")
        routes = f"routes:\n  - repository: acme/api\n    source_id: {source}\n"
        done = run(["check"], env=bridge_env(tmp_path, sync_url=emulator.url, routes=routes))
    assert done.returncode == 0, done.stderr
    assert f"source {source} found" in done.stdout


def test_check_fails_on_an_unknown_source(tmp_path: Path) -> None:
    """`bridge check` exits non-zero naming the route whose source does not exist."""
    with emulator_process(tmp_path) as emulator:
        routes = "routes:\n  - repository: acme/api\n    source_id: 00000000-0000-4000-8000-000000000000\n"
        done = run(["check"], env=bridge_env(tmp_path, sync_url=emulator.url, routes=routes))
    assert done.returncode == 2
    assert "line 2" in done.stderr
    assert "00000000-0000-4000-8000-000000000000" in done.stderr


def test_check_fails_on_a_wrong_token_without_printing_it(tmp_path: Path) -> None:
    """A token Sync refuses stops `bridge check` with a clear message and no token in it."""
    with emulator_process(tmp_path) as emulator:
        env = bridge_env(tmp_path, sync_url=emulator.url, routes="routes: []\n")
        env["BRIDGE_SYNC_TOKEN"] = "definitely-wrong-token"
        done = run(["check"], env=env)
    assert done.returncode == 2
    assert "401" in done.stderr
    assert "definitely-wrong-token" not in done.stderr + done.stdout
    assert TOKEN not in done.stderr


def test_bad_routes_file_names_the_line(tmp_path: Path) -> None:
    """A routes file with a mistake stops start-up with a message naming its line."""
    routes = (
        "routes:\n  - repository: acme/api\n    source_id: 5d6c1f0e-0000-4000-8000-000000000001\n"
        "  - branches: [main]\n"
    )
    env = bridge_env(tmp_path, sync_url="http://127.0.0.1:9", routes=routes)
    done = run(["serve", "--port", str(free_port())], env=env)
    assert done.returncode == 2
    assert "routes.yaml:4: repository is missing" in done.stderr


def test_migrate_applies_the_schema(tmp_path: Path) -> None:
    """`bridge migrate` creates the SQLite database and says it is up to date; like `bridge jobs` it
    opens the store only, so it asks for no webhook secret (a migration job is not given one)."""
    env = bridge_env(tmp_path, sync_url="http://127.0.0.1:9", routes="routes: []\n")
    del env["BRIDGE_WEBHOOK_SECRET"]
    done = run(["migrate"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    assert (tmp_path / "bridge.db").exists()


@pytest.mark.parametrize("args", [["serve", "--port", "9"], ["check"]], ids=["serve", "check"])
def test_a_command_that_verifies_or_serves_refuses_to_start_without_a_webhook_secret(
    tmp_path: Path, args: list[str]
) -> None:
    """No secret, no service: the store-only commands do without it, these do not (before binding a
    port or opening the store)."""
    env = bridge_env(tmp_path, sync_url="http://127.0.0.1:9", routes="routes: []\n")
    del env["BRIDGE_WEBHOOK_SECRET"]
    done = run(args, env=env, cwd=tmp_path)  # cwd: no stray .env is read
    assert done.returncode == 2
    assert done.stderr.startswith("bridge: invalid settings: BRIDGE_WEBHOOK_SECRET: Field required")
    assert not (tmp_path / "bridge.db").exists()


def test_python_dash_m_matches_console_script() -> None:
    """`python -m bridge` is the same program as the console script."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.startswith("bridge ")
