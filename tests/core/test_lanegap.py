"""The lane's hold after a create: the base gap, doubled per wasted create in a row, capped."""

from __future__ import annotations

import pytest

from bridge.core.lanegap import lane_hold


@pytest.mark.parametrize(
    ("wasted", "hold"), [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (4, 8.0), (10_000, 8.0)]
)
def test_hold_doubles_per_wasted_create_up_to_the_cap(wasted: int, hold: float) -> None:
    assert lane_hold(base=1.0, cap=8.0, wasted=wasted) == hold


def test_a_cap_between_doublings_is_reached_exactly() -> None:
    assert [lane_hold(base=1.5, cap=5.0, wasted=n) for n in range(4)] == [1.5, 3.0, 5.0, 5.0]


@pytest.mark.parametrize("cap", [0.0, 0.5, 1.0])
def test_a_cap_at_or_below_the_base_turns_the_backoff_off(cap: float) -> None:
    assert lane_hold(base=1.0, cap=cap, wasted=5) == 1.0


def test_no_base_gap_means_no_hold() -> None:
    assert lane_hold(base=0.0, cap=8.0, wasted=3) == 0.0
