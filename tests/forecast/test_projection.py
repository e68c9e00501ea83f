from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from apt_energy.forecast.projection import project

from apt_energy import billing

pytestmark = pytest.mark.unit


def test_projection_crosses_tier_3_before_it_happens() -> None:
    # 300 kWh by day 20 of 30 in March, forecast 360 for the month → 300 + 360 × 10/30 = 420 > 400
    limit = billing.next_tier_limit(billing.load().electricity, date(2025, 3, 1), Decimal(300))
    p = project(so_far=300, days_elapsed=20, days_in_month=30, forecast_month=360, limit=limit)
    assert (p.projected, p.limit, p.crosses) == (420, 400, True)


def test_no_warning_once_the_tier_is_already_crossed_or_in_the_top_tier() -> None:
    assert not project(so_far=410, days_elapsed=20, days_in_month=30, forecast_month=360, limit=400).crosses
    assert not project(so_far=500, days_elapsed=20, days_in_month=30, forecast_month=360, limit=None).crosses
