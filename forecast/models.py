"""Monthly forecast models, pure numpy: seasonal naive (the baseline) and additive ETS on log usage.

Why not statsforecast: on this machine it pulls ~20 packages (statsmodels, scipy, fugue, coreforecast…)
into every Spark worker for one model; ETS(A,N,A) on logs is 40 lines and fits a 36-month series in
microseconds. Log scale makes the seasonality multiplicative (heating's summer is ~1/10 of its winter)
and keeps intervals positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Model = Literal["snaive", "ets", "pooled"]
M = 12
# Forecasts are issued for at most one seasonal cycle ahead: beyond it ETS would reuse its seasonal
# states with no added variance and the pooled model's intervals were never backtested (h = 1..3
# backtested, the demo issues up to 12); usage_forecasts.horizon has the same bound.
MAX_HORIZON = 12
Z80, Z95 = 1.2815515655446004, 1.959963984540054
_ALPHAS = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5)
_GAMMAS = (0.01, 0.05, 0.1, 0.2)


@dataclass(frozen=True)
class Forecast:
    """h-step forecasts (arrays of length h)."""

    point: np.ndarray
    lo80: np.ndarray
    hi80: np.ndarray
    lo95: np.ndarray
    hi95: np.ndarray


def seasonal_naive(y: np.ndarray, h: int) -> Forecast:
    """ŷ(t+k) = y(t+k-12); intervals from the spread of the series' own seasonal differences."""
    if len(y) < M + 1:
        raise ValueError(f"seasonal naive needs > {M} months, got {len(y)}")
    point = np.array([y[len(y) - M + (k % M)] for k in range(h)], dtype=float)
    diffs = y[M:] - y[:-M]
    sd = float(np.sqrt(np.mean(diffs ** 2))) if len(diffs) else 0.0
    lo80, hi80 = np.maximum(point - Z80 * sd, 0), point + Z80 * sd
    lo95, hi95 = np.maximum(point - Z95 * sd, 0), point + Z95 * sd
    return Forecast(point, lo80, hi80, lo95, hi95)


def _ets_pass(z: np.ndarray, alpha: float, gamma: float) -> tuple[float, np.ndarray, np.ndarray]:
    level = float(np.mean(z[:M]))
    season = z[:M] - level
    errors = np.empty(len(z) - M)
    for t in range(M, len(z)):
        s = season[t % M]
        e = z[t] - (level + s)
        errors[t - M] = e
        level += alpha * e
        season[t % M] = s + gamma * e
    return level, season, errors


def ets(y: np.ndarray, h: int) -> Forecast:
    """ETS(A,N,A) on log(y): smoothing chosen by one-step SSE over a small grid; intervals from the
    one-step residuals, widened for h > 1 as σ²(1 + (h-1)α²); back-transformed (point = median)."""
    if len(y) < M + 2:
        raise ValueError(f"ETS needs > {M + 1} months, got {len(y)}")
    z = np.log(np.maximum(y, 1e-6))
    best = min(((a, g) for a in _ALPHAS for g in _GAMMAS),
               key=lambda ag: float(np.sum(_ets_pass(z, *ag)[2] ** 2)))
    level, season, errors = _ets_pass(z, *best)
    n = len(z)
    mean = np.array([level + season[(n + k) % M] for k in range(h)])
    sigma = float(np.sqrt(np.mean(errors ** 2)))
    sd = sigma * np.sqrt(1 + np.arange(h) * best[0] ** 2)
    return Forecast(np.exp(mean), np.exp(mean - Z80 * sd), np.exp(mean + Z80 * sd),
                    np.exp(mean - Z95 * sd), np.exp(mean + Z95 * sd))


def fit_forecast(model: Model, y: np.ndarray, h: int) -> Forecast:
    """Forecast ``h`` months after the monthly series ``y`` with a per-series ``model`` (the pooled
    model fits a panel of series: forecast/pooled.py)."""
    if model == "pooled":
        raise ValueError("the pooled model fits a panel of households, not one series (forecast.pooled)")
    return seasonal_naive(y, h) if model == "snaive" else ets(y, h)
