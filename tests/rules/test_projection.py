"""The projection rule (rules/projection.py) and the one projection formula."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apt_energy import config, rules

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})


# KEPCO bands by month as the application composes them from config/tariffs.yaml (spark/cli.py).
BANDS = {date(2024, 3, 1): (200.0, 400.0), date(2024, 8, 1): (300.0, 450.0), date(2024, 9, 1): (200.0, 400.0)}


def projection(**kw: object) -> rules.ProjectionOptions:
    return rules.ProjectionOptions(tier_limits=BANDS, **kw)  # type: ignore[arg-type]


def so_far(amount: float, days: float, forecast: float | None, month: date = date(2024, 3, 1),
           energy: str = "electricity") -> rules.MonthSoFar:
    return rules.MonthSoFar(7, energy, month, amount, days, forecast)


def test_projection_adds_the_forecast_share_of_the_days_left() -> None:
    # 300 kWh by day 20 of 30, forecast 360 for the month → 300 + 360 × 10/30 = 420
    assert rules.project(so_far=300, days_elapsed=20, days_in_month=30, forecast_month=360).projected == 420
    assert rules.project(so_far=300, days_elapsed=31, days_in_month=30, forecast_month=360).projected == 300
    assert rules.project(so_far=300, days_elapsed=10, days_in_month=30, forecast_month=-5).projected == 300


def test_projection_warns_before_the_month_enters_tier_3_with_the_message_numbers() -> None:
    # March (31 days): 300 kWh after 20 days, forecast 384 → 300 + 384 × 11/31 ≈ 436.3 > 400
    [alert] = rules.projection_alerts([so_far(300, 20, 384)], projection(estimate_bill=lambda e, m, x: 12345.0))
    assert (alert.rule, alert.period, alert.reference, alert.severity) == ("projection", date(2024, 3, 1), 400.0,
                                                                           "warning")
    assert alert.observed == pytest.approx(436.258, abs=1e-3)
    assert alert.detail["tier"] == 3 and alert.detail["projected_bill_krw"] == 12345.0


def test_projection_tier_boundaries_are_whole_kwh_as_billed() -> None:
    days = 31 - 31 * 0.5   # half the month left: projected = so far + forecast / 2
    at_limit = rules.projection_alerts([so_far(300, days, 201.8)], projection())   # 400.9 bills as 400: tier 2
    assert at_limit == []
    over = rules.projection_alerts([so_far(300, days, 202)], projection())         # 401: tier 3
    assert [a.reference for a in over] == [400.0]
    exactly = rules.projection_alerts([so_far(400, days, 10)], projection())       # 400 so far is still tier 2
    assert [a.reference for a in exactly] == [400.0]


def test_projection_uses_the_summer_bands_in_july_and_august() -> None:
    august = date(2024, 8, 1)
    # 420 projected: over 400 but under the summer's 450 → nothing in August, tier 3 in September
    assert rules.projection_alerts([so_far(300, 15.5, 240, august)], projection()) == []
    sept = rules.projection_alerts([so_far(300, 15, 240, date(2024, 9, 1))], projection())
    assert [a.reference for a in sept] == [400.0]
    [summer] = rules.projection_alerts([so_far(300, 15.5, 320, august)], projection())   # 460 > 450
    assert summer.reference == 450.0 and summer.detail["tier"] == 3


def test_projection_warns_about_tier_2_only_when_configured() -> None:
    month = [so_far(150, 15, 120)]      # 150 + 120 × 16/31 ≈ 212 > 200
    assert rules.projection_alerts(month, projection()) == []
    [alert] = rules.projection_alerts(month, projection(from_tier=2))
    assert alert.reference == 200.0 and alert.detail["tier"] == 2


def test_projection_without_a_forecast_raises_nothing() -> None:
    assert rules.projection_alerts([so_far(390, 20, None)], projection()) == []


def test_projection_already_over_the_line_raises_nothing() -> None:
    assert rules.projection_alerts([so_far(460, 20, 600)], projection()) == []   # over 400 already: tier 3
    assert rules.projection_alerts([so_far(401, 20, 600)], projection()) == []


def test_projection_waits_for_min_days_of_evidence() -> None:
    assert rules.projection_alerts([so_far(40, 2, 500)], projection(min_days=3)) == []
    assert len(rules.projection_alerts([so_far(60, 3, 500)], projection(min_days=3))) == 1


def test_projection_crosses_a_configured_threshold_for_other_energy_types() -> None:
    heat = so_far(900, 20, 1100, energy="heating")      # 900 + 1100 × 11/31 ≈ 1290 > 1200
    assert rules.projection_alerts([heat], projection()) == []
    [alert] = rules.projection_alerts([heat], projection(thresholds={"heating": 1200.0}))
    assert (alert.energy_type, alert.reference, alert.detail["kind"], alert.detail["tier"]) == (
        "heating", 1200.0, "threshold", None)


def test_projection_warns_about_the_next_line_only() -> None:
    # a projection past both a threshold (380) and tier 3 (400): one alert, for the lower line
    [alert] = rules.projection_alerts([so_far(300, 20, 400)], projection(thresholds={"electricity": 380.0}))
    assert alert.reference == 380.0


def test_projection_skips_a_month_without_tier_bands() -> None:
    assert rules.projection_alerts([so_far(300, 20, 400, date(2019, 3, 1))], projection()) == []


@given(so_far_kwh=st.floats(0, 800), days=st.floats(0, 31), forecast=st.floats(0, 900),
       month=st.sampled_from(sorted(BANDS)))
def test_projection_alerts_only_for_a_line_between_the_month_so_far_and_its_projection(
        so_far_kwh: float, days: float, forecast: float, month: date) -> None:
    found = rules.projection_alerts([so_far(so_far_kwh, days, forecast, month)], projection(min_days=0))
    assert len(found) <= 1
    for alert in found:
        assert alert.reference in BANDS[month]
        assert int(so_far_kwh) <= alert.reference < int(alert.observed)   # billed on whole kWh
        assert alert.observed <= so_far_kwh + forecast + 1e-3              # never more than the whole forecast
    if so_far_kwh >= max(BANDS[month]) + 1:
        assert found == []                                                 # past the top tier: nothing to warn
