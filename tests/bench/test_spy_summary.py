"""`bench/spy_summary.py` attributes each sample to its own process and thread."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "spy_summary.py"

PARENT = 'process 10:"python -m bridge serve"'
CHILD = 'process 11:"python -m bridge.worker_process 13"'


@pytest.fixture(scope="module")
def spy_summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("spy_summary", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_childs_stack_belongs_to_the_child(spy_summary: ModuleType) -> None:
    frames = [PARENT, CHILD, "thread (11): MainThread", "main (bridge/worker_process.py:3)", "flush (x.py:1)"]

    assert spy_summary.where(frames) == (f"{CHILD} / thread (11): MainThread", frames[3:])


def test_the_parents_own_stack_and_a_stack_without_heads(spy_summary: ModuleType) -> None:
    frames = [PARENT, "thread (10): MainThread", "serve (bridge/cli.py:1)"]

    assert spy_summary.where(frames) == (f"{PARENT} / thread (10): MainThread", frames[2:])
    assert spy_summary.where(["MainThread", "f (a.py:1)"]) == ("MainThread", ["f (a.py:1)"])


def test_a_function_named_process_is_a_frame(spy_summary: ModuleType) -> None:
    frames = [PARENT, "thread (10): MainThread", "process (bridge/x.py:4)", "thread (bridge/y.py:5)"]

    assert spy_summary.where(frames) == (f"{PARENT} / thread (10): MainThread", frames[2:])


def test_shares_are_of_each_process(
    spy_summary: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    profile = tmp_path / "profile.txt"
    profile.write_text(
        f"{PARENT};thread (10): MainThread;serve (bridge/cli.py:1) 3\n"
        f"{PARENT};{CHILD};thread (11): MainThread;flush (bridge/store/sqlite.py:9) 1\n"
    )
    monkeypatch.setattr(sys, "argv", ["spy_summary.py", str(profile)])

    spy_summary.main()

    out = capsys.readouterr().out
    assert f"== {PARENT} / thread (10): MainThread: 3 samples" in out
    assert f"== {CHILD} / thread (11): MainThread: 1 samples" in out
    assert "100.0   100.0  flush (bridge/store/sqlite.py)" in out
