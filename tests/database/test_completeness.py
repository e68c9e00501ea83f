"""The completeness note a bill carries when its month measured less than it expects."""

from __future__ import annotations

import pytest
from apt_energy.database.completeness import ComplexCompleteness, estimated_note, summary_line

pytestmark = pytest.mark.unit


def test_a_month_missing_hours_is_estimated_with_both_counts_in_hours() -> None:
    assert estimated_note(744 * 3600, 712 * 3600) == "estimated: 712 of 744 hours measured"
    assert estimated_note(744 * 3600, 712 * 3600 + 1800) == "estimated: 712.5 of 744 hours measured"


def test_a_complete_month_or_one_expecting_nothing_has_no_note() -> None:
    assert estimated_note(744 * 3600, 744 * 3600) is None
    assert estimated_note(0, 0) is None
    assert estimated_note(3600, 7200) is None      # more than expected (an interval across the month's start)


def test_the_summary_line_gives_the_measured_share_and_incomplete_household_months() -> None:
    line = summary_line(ComplexCompleteness("water", 120, 3, 120 * 744 * 3600, 120 * 744 * 3600 - 3 * 32 * 3600))
    assert line == "water        99.89 % of 89,280 expected hours measured, 3 of 120 household-months incomplete"
