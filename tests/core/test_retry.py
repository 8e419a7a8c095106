"""Full-jitter exponential backoff with a cap, Retry-After and a horizon."""

from __future__ import annotations

import pytest

from bridge.core.retry import DAY, RetryPolicy

POLICY = RetryPolicy(base=1.0, cap=3600.0, horizon=3 * DAY)


@pytest.mark.parametrize(
    ("attempt", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0), (13, 3600.0), (500, 3600.0)]
)
def test_ceiling_doubles_up_to_the_cap(attempt: int, ceiling: float) -> None:
    """The largest draw is base * 2**(attempt-1), never above the cap."""
    assert POLICY.delay(attempt, rand=0.999999) == pytest.approx(ceiling, rel=1e-5)


def test_full_jitter_spans_zero_to_ceiling() -> None:
    """The delay is the draw times the ceiling."""
    assert POLICY.delay(4, rand=0.0) == 0.0
    assert POLICY.delay(4, rand=0.5) == 4.0


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After raises a small draw to it."""
    assert POLICY.delay(1, rand=0.1, retry_after=30) == 30


def test_retry_after_never_exceeds_the_cap() -> None:
    """An absurd Retry-After is capped."""
    assert POLICY.delay(1, rand=0.1, retry_after=10 * DAY) == 3600.0


@pytest.mark.parametrize(("retry_at", "gives_up"), [(3 * DAY, False), (3 * DAY + 1, True)])
def test_horizon(retry_at: float, gives_up: bool) -> None:
    """A retry past three days after the first attempt gives up."""
    assert POLICY.gives_up(first_attempt_at=0.0, retry_at=retry_at) is gives_up
