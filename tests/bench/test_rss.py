"""`bench/_common.py` reads a process's memory and its child processes' apart (the bridge's ingress and
its worker process), and their sum is what the benchmarks report as the bridge's RSS."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from bench._common import rss_mb, rss_parts_mb

# A parent that holds ~40 MB itself and starts a child that holds ~80 MB, then waits.
PARENT = """
import subprocess, sys
held = bytearray(b"x") * (40 * 1024 * 1024)  # written, so resident
code = "import sys; held = bytearray(b'x') * (80 * 1024 * 1024); print(flush=True); sys.stdin.read()"
pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
child = subprocess.Popen([sys.executable, "-c", code], **pipes)
child.stdout.readline()
print(flush=True)
sys.stdin.read()
"""


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-c", PARENT]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()  # both hold their memory now
        try:
            yield proc
        finally:
            proc.kill()


def test_own_and_children_apart(parent: subprocess.Popen[bytes]) -> None:
    own, children = rss_parts_mb(parent.pid)
    assert 40 <= own < 80
    assert 80 <= children < 120
    assert abs(rss_mb(parent.pid) - (own + children)) < 5


def test_no_children() -> None:
    cmd = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE) as lonely:
        try:
            own, children = rss_parts_mb(lonely.pid)
            assert own > 0
            assert children == 0
        finally:
            lonely.kill()
