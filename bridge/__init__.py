"""bridge: turns GitHub App push webhooks into Chroma Sync invocations.

Importing the package keeps ``rich`` out of the process: structlog imports it at its own import
whenever it is installed (for the console renderer's tracebacks), and it is installed only because
Litestar's command line needs it, which the bridge does not use. It cost 3-4 MB of resident memory
in each of the bridge's two processes: 6 MB of the bridge's 116 (``bench/HISTORY.md``, twenty-third
round). Without it, the console renderer prints plain tracebacks; the JSON lines never used it. A
process that imported ``rich`` before ``bridge`` keeps it.
"""

import sys

sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # None: "import rich" raises ImportError

__version__ = "0.1.0"
