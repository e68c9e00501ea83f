"""The threshold rule (rules/threshold.py): a level crossed once per household-month."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from apt_energy import config, rules

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})


def change(before: str, after: str, energy: str = "electricity") -> rules.UsageChange:
    return rules.UsageChange(1, energy, date(2024, 8, 1), Decimal(before), Decimal(after))


def test_threshold_fires_once_on_the_crossing_only() -> None:
    t = SETTINGS.rules.thresholds
    assert [a.rule for a in rules.threshold_crossings([change("490", "505")], t)] == ["threshold"]
    assert rules.threshold_crossings([change("505", "520")], t) == []      # crossing again: nothing
    assert rules.threshold_crossings([change("100", "499.999")], t) == []
    both = rules.threshold_crossings([change("400", "750")], t)
    assert [(a.rule, a.severity) for a in both] == [("threshold", "warning"), ("threshold_critical", "critical")]
    assert both[0].observed == 750 and both[0].reference == 500
    assert rules.threshold_crossings([change("0", "1000", "gas")], t) == []

