"""Models and backtest metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from apt_energy.forecast.backtest import metrics, rolling_origin
from apt_energy.forecast.models import ets, seasonal_naive

pytestmark = pytest.mark.unit


def test_seasonal_naive_repeats_last_year() -> None:
    y = np.arange(1, 25, dtype=float)           # months 1..24
    assert list(seasonal_naive(y, 3).point) == [13.0, 14.0, 15.0]


def test_seasonal_naive_mase_on_a_linear_series_is_one_by_hand() -> None:
    # y = t: every seasonal difference is 12, so the scale is 12 and every snaive error is 12 → MASE 1;
    # sMAPE at origin 26, h=1: actual 27, forecast 15 → 200·12/42.
    y = np.arange(1, 31, dtype=float)
    errors = rolling_origin(y, "snaive", windows=2, horizon=1)
    assert [(e.origin, e.actual, e.point) for e in errors] == [(28, 29.0, 17.0), (29, 30.0, 18.0)]
    m = metrics(errors)
    assert m.mase == pytest.approx(1.0)
    assert m.smape == pytest.approx(np.mean([200 * 12 / 46, 200 * 12 / 48]))
    assert m.bias_pct == pytest.approx(100 * -24 / 59)


def test_ets_recovers_a_clean_multiplicative_season() -> None:
    season = np.array([1.2, 1.1, 1.0, 0.9, 0.9, 1.0, 1.4, 1.7, 1.2, 0.9, 1.0, 1.1])
    y = 300 * np.tile(season, 3)
    fc = ets(y, 3)
    assert fc.point == pytest.approx(300 * season[:3], rel=1e-3)
    assert np.all(fc.lo95 <= fc.point) and np.all(fc.point <= fc.hi95)
