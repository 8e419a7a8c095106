"""Importing ``bridge`` keeps ``rich`` out of the process (see ``bridge/__init__.py``)."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_the_bridges_processes_do_not_import_rich() -> None:
    code = (
        "import sys, bridge.worker_process, bridge.cli, structlog.dev\n"
        "print(sys.modules['rich'] is None, structlog.dev.rich is None)"
    )

    assert _run(code) == "True True"


def test_a_process_that_imported_rich_first_keeps_it() -> None:
    assert _run("import rich, sys, bridge; print(sys.modules['rich'] is rich)") == "True"


def test_the_console_renderer_prints_a_plain_traceback_without_rich() -> None:
    code = (
        "import bridge, io, structlog\n"
        "out = io.StringIO()\n"
        "structlog.configure(processors=[structlog.dev.ConsoleRenderer(colors=False)],"
        " logger_factory=structlog.PrintLoggerFactory(out))\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    structlog.get_logger().exception('boom')\n"
        "print('Traceback (most recent call last)' in out.getvalue(), 'ZeroDivisionError' in out.getvalue())"
    )

    assert _run(code) == "True True"
