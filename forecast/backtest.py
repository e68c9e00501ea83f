"""Rolling-origin backtests and their metrics (MASE with m = 12, sMAPE, bias, interval coverage)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from apt_energy.forecast.models import M, Model, fit_forecast


class Error(NamedTuple):
    """One forecast against its actual, with the series' in-sample seasonal-naive scale."""

    origin: int
    horizon: int
    actual: float
    point: float
    lo80: float
    hi80: float
    lo95: float
    hi95: float
    scale: float   # mean |y(t) - y(t-12)| over the training part


def rolling_origin(y: np.ndarray, model: Model, *, windows: int = 12, horizon: int = 3) -> list[Error]:
    """Origins at n-h-windows+1 .. n-h: each trains on y[:origin] and forecasts 1..h months."""
    out = []
    n = len(y)
    for origin in range(max(M + 2, n - horizon - windows + 1), n - horizon + 1):
        train = y[:origin]
        fc = fit_forecast(model, train, horizon)
        scale = float(np.mean(np.abs(train[M:] - train[:-M])))
        for k in range(horizon):
            out.append(Error(origin, k + 1, float(y[origin + k]), float(fc.point[k]), float(fc.lo80[k]),
                             float(fc.hi80[k]), float(fc.lo95[k]), float(fc.hi95[k]), scale))
    return out


def limit_errors(y: np.ndarray, expected: np.ndarray, *, windows: int = 12, horizon: int = 3) -> list[Error]:
    """The limit scored like a model, at the same origins as :func:`rolling_origin`: the forecast is the
    month's expected value (the simulator's, without the month's noise and anomalies), which no model
    can beat on average; it has no intervals (nan)."""
    out = []
    n = len(y)
    nan = float("nan")
    for origin in range(max(M + 2, n - horizon - windows + 1), n - horizon + 1):
        train = y[:origin]
        scale = float(np.mean(np.abs(train[M:] - train[:-M])))
        for k in range(horizon):
            out.append(Error(origin, k + 1, float(y[origin + k]), float(expected[origin + k]), nan, nan, nan, nan,
                             scale))
    return out


class Metrics(NamedTuple):
    n: int
    mase: float
    smape: float
    bias_pct: float
    coverage80: float
    coverage95: float


def metrics(errors: list[Error]) -> Metrics:
    """MASE = mean(|e| / scale); sMAPE = mean 200|e|/(|y|+|ŷ|); bias = Σ(ŷ-y)/Σy in %; coverage in %."""
    a = np.array([e.actual for e in errors])
    p = np.array([e.point for e in errors])
    scale = np.array([e.scale for e in errors])
    ok = scale > 0
    denom = np.abs(a) + np.abs(p)
    return Metrics(
        n=len(errors),
        mase=float(np.mean(np.abs(p - a)[ok] / scale[ok])) if ok.any() else float("nan"),
        smape=float(np.mean(np.where(denom > 0, 200 * np.abs(p - a) / np.where(denom > 0, denom, 1), 0))),
        bias_pct=float(100 * np.sum(p - a) / np.sum(a)) if np.sum(a) else float("nan"),
        coverage80=_coverage([(e.lo80, e.actual, e.hi80) for e in errors]),
        coverage95=_coverage([(e.lo95, e.actual, e.hi95) for e in errors]))


def _coverage(bounds: list[tuple[float, float, float]]) -> float:
    """% of actuals inside their interval; nan for a forecast without intervals (the limit)."""
    b = np.array(bounds, dtype=float).reshape(-1, 3)
    if np.isnan(b[:, 0]).all():
        return float("nan")
    return float(100 * np.mean((b[:, 0] <= b[:, 1]) & (b[:, 1] <= b[:, 2])))
