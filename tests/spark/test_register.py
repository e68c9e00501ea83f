"""Register continuity as a pure rule (the sink's SQL implements it)."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from apt_energy.spark.register import judge_step

pytestmark = pytest.mark.unit


def test_adjacent_intervals_are_continuous_only_when_the_register_moves_by_exactly_the_value() -> None:
    assert judge_step(D("10.5"), D("10.75"), D("0.25"), missing_s=0) is None
    assert judge_step(D("10.5"), D("10.750001"), D("0.25"), missing_s=0) == "step"
    assert judge_step(D("10.5"), D("10.5"), D("0.25"), missing_s=0) == "step"


def test_a_register_going_down_is_backwards_whatever_lies_between() -> None:
    assert judge_step(D("1000.125"), D("0.75"), D("0.25"), missing_s=0) == "backwards"
    assert judge_step(D("1000.125"), D("0.75"), D("0.25"), missing_s=7200) == "backwards"


def test_missing_intervals_are_a_gap_unless_the_register_cannot_hold_this_interval() -> None:
    assert judge_step(D("10"), D("12"), D("0.5"), missing_s=7200) == "gap"     # 1.5 in the missing hours
    assert judge_step(D("10"), D("10.5"), D("0.5"), missing_s=7200) == "gap"   # nothing used meanwhile
    assert judge_step(D("10"), D("10.25"), D("0.5"), missing_s=7200) == "step"
