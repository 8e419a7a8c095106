"""Fixtures for the deployment tests: the Dockerfile read as instructions, and the overlays rendered.

No Docker engine runs on the development or CI machines, so these tests read the Dockerfile and the
Kubernetes manifests as data and check the promises they make to each other and to the bridge
(port, probes, user, grace period, secrets); ``test_wheel_start.py`` replays the Dockerfile's steps.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("sqlite", "postgres")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its stage, keyword (upper case) and the text after it."""

    stage: str
    keyword: str
    value: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's list, e.g. ``CMD ["serve"]``."""
        parsed = json.loads(self.value)
        assert isinstance(parsed, list), f"line {self.line}: {self.keyword} is not in exec form"
        return [str(part) for part in parsed]


class Dockerfile:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""

    def __init__(self, text: str) -> None:
        self.instructions: list[Instruction] = []
        stage = ""
        pending: list[str] = []
        start = 0
        for number, raw in enumerate(text.splitlines(), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if not pending:
                start = number
            pending.append(stripped.removesuffix("\\").strip())
            if stripped.endswith("\\"):
                continue
            keyword, _, value = " ".join(pending).partition(" ")
            pending = []
            keyword = keyword.upper()
            if keyword == "FROM":
                match = re.search(r"\bAS\s+(\S+)$", value, re.IGNORECASE)
                stage = match.group(1) if match else value
            self.instructions.append(Instruction(stage, keyword, value.strip(), start))

    def stages(self) -> list[str]:
        return list(dict.fromkeys(i.stage for i in self.instructions))

    def all(self, keyword: str, stage: str | None = None) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword and stage in (None, i.stage)]

    def one(self, keyword: str, stage: str | None = None) -> Instruction:
        found = self.all(keyword, stage)
        assert len(found) == 1, f"expected one {keyword} in stage {stage}, found {len(found)}"
        return found[0]

    def env(self, stage: str) -> dict[str, str]:
        """The ENV values a stage sets (``KEY=value`` pairs; ``$PATH``-style references kept as text)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV", stage):
            for pair in instruction.value.split():
                key, _, value = pair.partition("=")
                values[key] = value
        return values

    @property
    def final_stage(self) -> str:
        return self.stages()[-1]


def kubectl() -> str | None:
    """The pinned kubectl that .ci/deploy-check installs, else the one on PATH."""
    pinned = ROOT / ".venv-deploy" / "bin" / "kubectl"
    return str(pinned) if pinned.exists() else shutil.which("kubectl")


@pytest.fixture(scope="session")
def dockerfile() -> Dockerfile:
    return Dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Each overlay as ``kubectl kustomize`` renders it (offline, well under a second each)."""
    binary = kubectl()
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is needed to render deploy/overlays (.ci/deploy-check installs one)")
        pytest.skip("kubectl is not installed: run .ci/deploy-check once to get the pinned one")
    result: dict[str, list[dict[str, Any]]] = {}
    for overlay in OVERLAYS:
        out = subprocess.run(
            [binary, "kustomize", str(ROOT / "deploy" / "overlays" / overlay)],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        result[overlay] = [doc for doc in yaml.safe_load_all(out) if doc]
    return result


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One overlay's rendered resources (each test that takes it runs once per overlay)."""
    docs: list[dict[str, Any]] = rendered[request.param]
    return docs
