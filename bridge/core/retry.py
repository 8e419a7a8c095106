"""Retry policy for calls to Chroma Sync: capped exponential backoff with full jitter.

The randomness is a parameter (``rand`` in [0, 1)), so the policy is a pure function and tests pick
the draw. ``Retry-After`` from the server is a floor on the delay, never a reason to wait past the cap.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86_400.0


def capped_doubling(base: float, *, times: int, cap: float) -> float:
    """``base`` doubled ``times`` times (0 or less: ``base``), but no more than ``cap``."""
    return min(cap, base * 2.0 ** min(max(times, 0), 62))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``delay(n)`` is uniform in [0, min(cap, base * 2**(n-1))), raised to ``Retry-After`` if given."""

    base: float = 1.0
    cap: float = 3_600.0
    horizon: float = 3 * DAY

    def delay(self, attempt: int, *, rand: float, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` (>= 1) failed."""
        ceiling = capped_doubling(self.base, times=attempt - 1, cap=self.cap)
        delay = min(max(rand, 0.0), 1.0) * ceiling
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.cap))
        return delay

    def gives_up(self, *, first_attempt_at: float, retry_at: float) -> bool:
        """Whether a retry at ``retry_at`` would fall beyond the horizon of a job first tried then."""
        return retry_at - first_attempt_at > self.horizon
