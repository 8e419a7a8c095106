"""The Dockerfile's promises, read as data (no Docker engine runs here): base, user, start, context."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Dockerfile  # the fixture's type; conftest is not imported at run time

ROOT = Path(__file__).resolve().parents[2]


def test_two_stages_on_one_pinned_slim_python_base(dockerfile: Dockerfile) -> None:
    """Builder and runtime share one base (the venv moves between them), a fixed slim 3.11 tag."""
    bases = {i.value.split()[0] for i in dockerfile.all("FROM")}
    assert dockerfile.stages() == ["builder", "runtime"]
    assert len(bases) == 1
    (base,) = bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_builder_only_runs_the_shared_install_script(dockerfile: Dockerfile) -> None:
    """Every install step is deploy/install-app.sh, which test_wheel_start.py replays."""
    for run in dockerfile.all("RUN", "builder"):
        for command in run.value.split("&&"):
            assert shlex.split(command)[:2] == ["sh", "deploy/install-app.sh"], run


def test_runtime_copies_only_the_venv_from_the_builder(dockerfile: Dockerfile) -> None:
    """No source tree, wheel or pip cache reaches the final image."""
    copies = dockerfile.all("COPY", "runtime")
    assert [c.value for c in copies] == ["--from=builder /opt/bridge /opt/bridge"]


def test_runs_as_a_fixed_numeric_unprivileged_user(dockerfile: Dockerfile) -> None:
    """Numeric, so Kubernetes can verify runAsNonRoot; the same uid the manifests ask for."""
    user = dockerfile.one("USER", "runtime").value
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert gid.isdigit()
    assert int(uid) >= 10000
    assert int(gid) >= 10000


def test_starts_bridge_serve_on_all_interfaces_port_8080(dockerfile: Dockerfile) -> None:
    """ENTRYPOINT bridge, CMD serve: `docker run IMAGE migrate` runs another subcommand."""
    assert dockerfile.one("ENTRYPOINT").exec_form() == ["bridge"]
    everywhere = "0.0.0.0"  # noqa: S104 - inside a container, all interfaces is the point
    assert dockerfile.one("CMD").exec_form() == ["serve", "--host", everywhere, "--port", "8080"]
    assert dockerfile.one("EXPOSE").value == "8080"


def test_healthcheck_asks_healthz_with_python_not_curl(dockerfile: Dockerfile) -> None:
    """The slim image has no curl; the interpreter is there already."""
    healthcheck = dockerfile.one("HEALTHCHECK").value
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    assert "http://127.0.0.1:8080/healthz" in command[2]


def test_image_defaults_point_at_the_writable_volume_and_the_routes_mount(dockerfile: Dockerfile) -> None:
    """The database lives under /data (the only writable place besides /tmp)."""
    env = dockerfile.env("runtime")
    assert env["BRIDGE_DATABASE_URL"] == "sqlite:////data/bridge.db"
    assert env["BRIDGE_ROUTES_FILE"] == "/etc/bridge/routes.yaml"
    assert env["PATH"].startswith("/opt/bridge/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"


def _dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (is_exception, regex) in order; the last matching pattern decides."""
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = line.removeprefix("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        patterns.append((negated, re.compile(regex)))
    return patterns


def _in_context(path: str) -> bool:
    """Whether Docker sends ``path`` (relative to the repository) with the build context."""
    parts = Path(path).parts
    included = True
    for negated, pattern in _dockerignore_patterns():
        # A pattern that matches a folder applies to everything inside it.
        if any(pattern.fullmatch("/".join(parts[: i + 1])) for i in range(len(parts))):
            included = negated
    return included


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("bridge/cli.py", True),
        ("requirements/runtime.lock", True),
        ("requirements/dev.lock", False),
        (".env", False),
        (".venv/bin/python", False),
        ("bridge.db", False),
        ("bridge/__pycache__/cli.cpython-311.pyc", False),
        ("tests/conftest.py", False),
    ],
)
def test_dockerignore_is_an_allowlist(path: str, sent: bool) -> None:
    """Only what the build needs is sent; secrets, venvs, databases and caches never are."""
    assert _in_context(path) is sent


def test_every_copied_file_is_in_the_build_context(dockerfile: Dockerfile) -> None:
    """A COPY of something .dockerignore leaves out would fail only at `docker build`."""
    for copy in dockerfile.all("COPY", "builder"):
        for source in copy.value.split()[:-1]:
            path = ROOT / source
            assert path.exists(), f"line {copy.line}: {source} does not exist"
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if "__pycache__" not in relative:
                    assert _in_context(relative), f"line {copy.line}: .dockerignore leaves out {relative}"
