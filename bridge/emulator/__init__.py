"""A Chroma Sync emulator: the published API in memory, with a clock and fault injection.

Used by the tests and by ``bridge dev``. ``state.py`` holds the domain (no HTTP; ``validation.py`` checks
requests), ``faults.py`` the fault rules, ``app.py`` the Litestar layer and uvicorn, ``testing.py`` test
helpers (a fake clock, the emulator on a free loopback port).
"""

from bridge.emulator.app import build_emulator_server, create_emulator_app, serve_emulator
from bridge.emulator.errors import ApiError
from bridge.emulator.faults import FaultRule
from bridge.emulator.state import EmulatorConfig, EmulatorState

__all__ = [
    "ApiError",
    "EmulatorConfig",
    "EmulatorState",
    "FaultRule",
    "build_emulator_server",
    "create_emulator_app",
    "serve_emulator",
]
