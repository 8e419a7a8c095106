"""The image's install and start steps, replayed without Docker.

No Docker engine runs on the development or CI machines, so this test replays the Dockerfile itself:
the builder stage's COPY lines stage a build context, its RUN lines (deploy/install-app.sh: wheel,
hash-checked lock, wheel without dependencies) run into a fresh virtual environment, and the image's
ENTRYPOINT and CMD start `bridge serve` from it. Absolute paths of the image are mapped under a
temporary folder. Needs PyPI for the locked dependencies (about 30 s).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Dockerfile  # the fixture's type; conftest is not imported at run time

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(600),
    pytest.mark.skipif(not (ROOT / "bridge" / "cli.py").exists(), reason="bridge/cli.py is not written yet"),
]

WEBHOOK_SECRET = "replayed-image-webhook-secret"  # test fixtures, not credentials
SYNC_TOKEN = "replayed-image-sync-token"
SHUTDOWN_TIMEOUT = 5
ROUTES = """\
routes:
  - repository: acme/api
    branches: [main]
    source_id: 00000000-0000-0000-0000-000000000000
"""


@dataclass(frozen=True)
class Image:
    """The replayed image: a folder standing for its root, and what its runtime stage declares."""

    root: Path
    env: dict[str, str]
    command: list[str]
    healthcheck: list[str]

    def path(self, inside: str) -> Path:
        """Where an absolute path of the image lives in the replay."""
        return self.root / inside.lstrip("/")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def build_env() -> dict[str, str]:
    """The caller's environment without settings of its own, so only the image's reach the bridge."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "VIRTUAL_ENV"))}


def replay_builder(dockerfile: Dockerfile, root: Path) -> None:
    """COPY the listed sources into the image root, then run each install step with paths mapped."""
    workdir = Path("/")
    env = build_env() | dockerfile.env("builder") | {"PYTHON": sys.executable}
    for instruction in dockerfile.instructions:
        if instruction.stage != "builder":
            continue
        if instruction.keyword == "WORKDIR":
            workdir = workdir / instruction.value
            (root / str(workdir).lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, dest = instruction.value.split()
            target = root / str(workdir / dest).lstrip("/")
            for source in sources:
                # Docker's rules: a folder's contents go into DEST; a file goes to DEST, or into it
                # when DEST ends with "/".
                if (ROOT / source).is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.db*")
                    shutil.copytree(ROOT / source, target, ignore=ignore, dirs_exist_ok=True)
                else:
                    place = target / Path(source).name if dest.endswith("/") else target
                    place.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / source, place)
        elif instruction.keyword == "RUN":
            for command in instruction.value.split("&&"):
                args = [str(root / a.lstrip("/")) if a.startswith("/") else a for a in shlex.split(command)]
                subprocess.run(args, cwd=root / str(workdir).lstrip("/"), env=env, check=True, timeout=300)


@pytest.fixture(scope="module")
def image(dockerfile: Dockerfile, tmp_path_factory: pytest.TempPathFactory) -> Image:
    """The Dockerfile's builder stage, replayed; the runtime stage's copy is the same venv in place."""
    root = tmp_path_factory.mktemp("image")
    replay_builder(dockerfile, root)
    (copy,) = dockerfile.all("COPY", "runtime")
    _, source, dest = copy.value.split()
    assert source == dest, "the venv must keep its path: its scripts name their interpreter"
    runtime_env = dockerfile.env("runtime")
    path = runtime_env.pop("PATH").replace("$PATH", os.environ["PATH"])
    path = ":".join(str(root / p.lstrip("/")) if p.startswith("/opt/") else p for p in path.split(":"))
    healthcheck = dockerfile.one("HEALTHCHECK").value
    return Image(
        root=root,
        env=build_env() | runtime_env | {"PATH": path},
        command=dockerfile.one("ENTRYPOINT").exec_form() + dockerfile.one("CMD").exec_form(),
        healthcheck=json.loads(healthcheck[healthcheck.index("CMD") + 3 :]),
    )


@pytest.fixture
def settings(image: Image, tmp_path: Path) -> dict[str, str]:
    """The image's environment plus what a deployment supplies: secrets, routes, a store, no Sync."""
    data = image.path("/data")
    data.mkdir(exist_ok=True)
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    assert image.env["BRIDGE_DATABASE_URL"] == "sqlite:////data/bridge.db"
    return image.env | {
        "BRIDGE_DATABASE_URL": f"sqlite:///{data / 'bridge.db'}",
        "BRIDGE_ROUTES_FILE": str(routes),
        "BRIDGE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BRIDGE_SYNC_TOKEN": SYNC_TOKEN,
        # Nothing listens there: serving must not need Chroma Sync to start or to stop.
        "BRIDGE_SYNC_URL": f"http://127.0.0.1:{free_port()}",
        "BRIDGE_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
    }


def bridge(image: Image, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(image.path("/opt/bridge/bin/bridge")), *args],
        env=env,
        cwd=image.path("/data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def get(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    """The HTTP status of a GET (or, with data, a POST) to the bridge on loopback."""
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310 - loopback http
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback http
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def signed_ping() -> tuple[bytes, dict[str, str]]:
    """GitHub's recorded ping delivery, signed with the test's webhook secret."""
    body = (ROOT / "tests" / "data" / "github" / "ping" / "payload.json").read_bytes()
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
        "X-GitHub-Event": "ping",
        "X-GitHub-Delivery": "00000000-0000-0000-0000-000000000001",
        "X-GitHub-Hook-ID": "1",
        "X-Hub-Signature-256": f"sha256={digest}",
    }


@pytest.fixture
def served(
    image: Image, settings: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`bridge serve` started as the image starts it, on a free loopback port instead of 0.0.0.0:8080."""
    port = free_port()
    command = list(image.command)
    command[command.index("--host") + 1] = "127.0.0.1"
    command[command.index("--port") + 1] = str(port)
    executable = shutil.which(command[0], path=image.env["PATH"])
    assert executable == str(image.path("/opt/bridge/bin/bridge"))
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [executable, *command[1:]], env=settings, cwd=image.path("/data"), stdout=log, stderr=log
        )
        try:
            yield process, port
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def wait_until_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bridge serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if get(f"http://127.0.0.1:{port}/healthz") == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"no 200 from /healthz within 60 s:\n{log.read_text()}")


def test_wheel_and_locked_dependencies_install_into_a_fresh_venv(image: Image) -> None:
    """The lock covers the wheel's requirements (install-app.sh ran `pip check`) and there is no pip."""
    venv = image.path("/opt/bridge")
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bridge; print(bridge.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version
    assert not list(venv.glob("lib/python*/site-packages/pip"))


def test_console_script_answers_help(image: Image, settings: dict[str, str]) -> None:
    result = bridge(image, "--help", env=settings)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "check", "jobs"):
        assert command in result.stdout


def test_migrate_exits_zero_and_is_idempotent(image: Image, settings: dict[str, str]) -> None:
    """What the postgres overlay's init container runs, twice: the second finds nothing to do."""
    for _ in range(2):
        result = bridge(image, "migrate", env=settings)
        assert result.returncode == 0, result.stderr


def test_serve_answers_probes_and_stops_cleanly_on_sigterm(
    image: Image,
    settings: dict[str, str],
    served: tuple[subprocess.Popen[bytes], int],
    tmp_path: Path,
) -> None:
    """Healthy, ready, scrapeable, answers a signed ping, the image's HEALTHCHECK passes, and SIGTERM
    ends it with status 0, having logged JSON lines only and no secret."""
    process, port = served
    log = tmp_path / "serve.log"
    wait_until_healthy(process, port, log)
    assert get(f"http://127.0.0.1:{port}/readyz") == 200
    assert get(f"http://127.0.0.1:{port}/metrics") == 200
    body, headers = signed_ping()
    assert get(f"http://127.0.0.1:{port}/webhooks/github", data=body, headers=headers) == 200

    healthcheck = [part.replace(":8080/", f":{port}/") for part in image.healthcheck]
    healthcheck[0] = str(image.path("/opt/bridge/bin") / healthcheck[0])
    assert subprocess.run(healthcheck, env=settings, timeout=10, check=False).returncode == 0

    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bridge serve still running {SHUTDOWN_TIMEOUT + 10} s after SIGTERM:\n{log.read_text()}")
    output = log.read_text()
    assert process.returncode == 0, output
    assert WEBHOOK_SECRET not in output
    assert SYNC_TOKEN not in output
    not_json = [line for line in output.splitlines() if line and not is_json_object(line)]
    assert not not_json, f"log lines that are not JSON (the image sets BRIDGE_LOG_FORMAT=json): {not_json}"
