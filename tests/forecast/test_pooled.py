"""The pooled model on synthetic panels whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from apt_energy.forecast.pooled import PooledOptions, fit_panel, forecast_hierarchy, forecast_panel
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

SEASON = np.array([1.18, 1.10, 1.00, 0.93, 0.95, 1.05, 1.38, 1.69, 1.25, 0.95, 1.00, 1.13])


def panel(levels: np.ndarray, months: int, *, sigma: float = 0.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = levels[:, None] * np.tile(SEASON, months // 12 + 1)[None, :months]
    return y * rng.lognormal(-sigma * sigma / 2, sigma, size=y.shape) if sigma else y


def test_a_clean_panel_is_forecast_exactly_from_its_shared_season_and_own_levels() -> None:
    levels = np.array([150.0, 220.0, 310.0, 400.0])
    fit = fit_panel(panel(levels, 36), 0)
    season = np.exp(fit.season)
    assert season / season[2] == pytest.approx(SEASON / SEASON[2], rel=1e-9)
    fc = forecast_panel(fit, 3)
    for level, f in zip(levels, fc, strict=True):
        assert f.point == pytest.approx(level * SEASON[:3], rel=1e-6)   # months 37..39 are Jan..Mar
        assert f.lo95 == pytest.approx(f.point) and f.hi95 == pytest.approx(f.point)


def test_season_and_levels_shrug_off_month_long_anomalies() -> None:
    # 3 % of household-months doubled (over-use): medians keep season and levels within 1 %
    rng = np.random.default_rng(3)
    levels = rng.uniform(100, 400, size=200)
    y = panel(levels, 36)
    y = np.where(rng.random(y.shape) < 0.03, 2 * y, y)
    fit = fit_panel(y, 0, PooledOptions(shrink=False))
    season = np.exp(fit.season)
    assert season / np.mean(season) == pytest.approx(SEASON / np.mean(SEASON), rel=0.01)
    assert np.exp(fit.level) * np.mean(season) == pytest.approx(levels * np.mean(SEASON), rel=0.01)
    # the point is the mean: over-use lifts it by about the 3 % × 1 it adds on average
    point = np.array([f.point for f in forecast_panel(fit, 1)])[:, 0]
    assert np.mean(point / (levels * SEASON[0])) == pytest.approx(1.03, abs=0.015)


def test_intervals_cover_fresh_months_at_their_nominal_rates() -> None:
    levels = np.random.default_rng(5).uniform(100, 400, size=400)
    y = panel(levels, 39, sigma=0.08, seed=9)
    train, future = y[:, :36], y[:, 36:]
    fc = forecast_panel(fit_panel(train, 0), 3)
    lo80, hi80 = np.array([f.lo80 for f in fc]), np.array([f.hi80 for f in fc])
    lo95, hi95 = np.array([f.lo95 for f in fc]), np.array([f.hi95 for f in fc])
    assert 100 * np.mean((lo80 <= future) & (future <= hi80)) == pytest.approx(80, abs=3)
    assert 100 * np.mean((lo95 <= future) & (future <= hi95)) == pytest.approx(95, abs=3)


def test_a_household_without_history_gets_no_forecast_and_is_left_out_of_the_sums() -> None:
    y = panel(np.array([100.0, 200.0, 300.0]), 24)
    y[1] = np.nan
    tree = forecast_hierarchy(y, 0, np.array([1, 1, 2]), 2)
    assert set(tree.households) == {0, 2}
    assert tree.groups[1].point == pytest.approx(tree.households[0].point)


def test_the_pooled_model_refuses_less_than_a_year() -> None:
    with pytest.raises(ValueError, match="needs >= 12 months"):
        fit_panel(np.ones((3, 11)), 0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), months=st.integers(12, 40), h=st.integers(1, 12), first=st.integers(0, 11),
       seed=st.integers(0, 2 ** 16), groups=st.integers(1, 4))
def test_reconciled_forecasts_sum_exactly(n: int, months: int, h: int, first: int, seed: int, groups: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.lognormal(5, 0.3, size=(n, months))
    member = rng.integers(0, groups, size=n)
    tree = forecast_hierarchy(y, first, member, h)
    points = {i: f.point for i, f in tree.households.items()}
    for g, f in tree.groups.items():
        assert np.array_equal(f.point, np.sum([points[i] for i in range(n) if member[i] == g], axis=0))
    assert np.array_equal(tree.total.point, np.sum(list(points.values()), axis=0))
    for f in (*tree.households.values(), *tree.groups.values(), tree.total):
        assert np.all(f.lo95 <= f.lo80) and np.all(f.lo80 <= f.hi80) and np.all(f.hi80 <= f.hi95)
