"""How long a lane is held after a create: the coalescing gap, and its backoff while Sync lags.

After the worker creates an invocation in a lane it does not create there again for ``base``
seconds (``BRIDGE_LANE_MIN_GAP_SECONDS``): pushes meanwhile coalesce into the newest. When that next
create then cancels the lane's previous invocation because Sync had not started it yet, that
invocation cost a create and a cancel and indexed nothing, and creating sooner would not have indexed
sooner either: Sync starts the lane's work no earlier than it starts what is already pending. So each
such create in a row doubles the hold, up to ``cap`` (``BRIDGE_LANE_MAX_GAP_SECONDS``); a create that
cancels nothing (the previous invocation had started, ended or never existed) starts again at
``base``. Under a storm of pushes to one branch this turns one create and one cancel per ``base``
seconds into one per ``cap`` seconds (``bench/HISTORY.md``, twenty-first round).
"""

from __future__ import annotations

from bridge.core.retry import capped_doubling


def lane_hold(*, base: float, cap: float, wasted: int) -> float:
    """Seconds the lane is held after a create that was the ``wasted``-th in a row to cancel the lane's
    previous, still pending invocation (0 for a create that cancelled none).

    ``base`` 0 turns holding off; a ``cap`` at or below ``base`` turns the backoff off.
    """
    if base <= 0:
        return 0.0
    if wasted <= 0 or cap <= base:
        return base
    return capped_doubling(base, times=wasted, cap=cap)
