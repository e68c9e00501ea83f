"""The pooled model: one seasonal shape learnt across every household of the complex, each household's
own level, empirical intervals from the pooled residuals. Pure numpy over a panel (households × months).

Why pooled: every household of a complex shares one season (weather, holidays, the calendar), so twelve
seasonal indices estimated from 840 households × 3 years are almost exact, while a household's own ETS
estimates them from three noisy values each. What is left per household is its level (size, habits),
which three years of deseasonalised months pin down to about a percent. The simulator's expected month
(household factor × base × season, edge/profile.py) has exactly this shape, so on simulated history the
pooled model lands near the best forecast possible; on real data the same shape is the standard
"global model" (M4/M5) starting point.

Everything is on log usage: the season is multiplicative (heating's summer is ~1/10 of its winter) and
medians of logs are robust to the month-long anomalies (leaks, over-use) a household has now and then.

The point forecast is the month's **mean** (median × the pooled mean/median ratio of that calendar month),
not its median: means add up, so the building and complex forecasts are the plain sums of their
households' forecasts (bottom-up, coherent) and are not biased low by the anomalies, which lift a sum's
mean but not a household's median. The backtest (forecast/job.py) measures the price at household level.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from apt_energy.forecast.models import Forecast, M

QUANTILES = (0.025, 0.10, 0.90, 0.975)   # lo95, lo80, hi80, hi95
_FLOOR = 1e-6


@dataclass(frozen=True)
class PooledOptions:
    """Knobs of the pooled model (defaults chosen by the backtest, see README "Forecasts")."""

    iterations: int = 4          # alternating median fits of season and levels (converges in 2-3)
    shrink: bool = True          # shrink each level towards the complex's by its own standard error
    deviation_alpha: float = 0.0  # EWMA weight of a household's recent deviation (0: none)
    deviation_phi: float = 0.8   # the deviation's damping per month ahead


@dataclass(frozen=True)
class PanelFit:
    """A fitted panel: the shared season, each series' level and recent deviation (logs), and the pooled
    residual distribution (for intervals and the mean correction)."""

    season: np.ndarray        # (12,) log seasonal index by calendar month (0 = January), mean 0
    level: np.ndarray         # (n,) log level per series (nan: no history)
    deviation: np.ndarray     # (n,) log deviation at the end of the history (0 without the deviation term)
    mean_ratio: np.ndarray    # (12,) Σ actual / Σ fitted median per calendar month: median → mean
    quantiles: np.ndarray     # (4,) log residual quantiles (QUANTILES), inflated for the level's error
    end: int                  # calendar month (0..11) of the last month of history
    options: PooledOptions


def _log(y: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.log(np.where(np.isnan(y), np.nan, np.maximum(y, _FLOOR)))


def fit_panel(y: np.ndarray, first_month: int, options: PooledOptions | None = None) -> PanelFit:
    """Fit the panel ``y`` (series × months, nan where a series has no month; calendar month of column 0
    = ``first_month``, 0 = January)."""
    opts = options or PooledOptions()
    t = y.shape[1]
    if t < M:
        raise ValueError(f"the pooled model needs >= {M} months, got {t}")
    with warnings.catch_warnings():
        # a household without any month yet has a nan level (no forecast), not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return _fit(y, first_month, opts)


def _fit(y: np.ndarray, first_month: int, opts: PooledOptions) -> PanelFit:
    n, t = y.shape
    z = _log(y)
    moy = (first_month + np.arange(t)) % M
    season = np.zeros(M)
    level = np.nanmedian(z, axis=1)
    for _ in range(opts.iterations):
        dev = z - level[:, None]
        season = np.array([np.nanmedian(dev[:, moy == m]) for m in range(M)])
        season -= season.mean()
        level = np.nanmedian(z - season[moy], axis=1)
    resid = z - level[:, None] - season[moy]
    counts = np.sum(~np.isnan(z), axis=1)
    # A median's variance is ~π/2 that of a mean: the level's own error, in the residuals' units.
    sigma = 1.4826 * float(np.nanmedian(np.abs(resid - np.nanmedian(resid))))
    se2 = (np.pi / 2) * sigma ** 2 / np.maximum(counts, 1)
    if opts.shrink and n > 2:
        centre = float(np.nanmean(level))
        between = max(float(np.nanvar(level)) - float(np.mean(se2)), 1e-12)
        level = centre + (level - centre) * between / (between + se2)
        resid = z - level[:, None] - season[moy]
    deviation = np.zeros(n)
    if opts.deviation_alpha > 0:
        for k in range(t):
            r = resid[:, k]
            deviation = np.where(np.isnan(r), deviation, (1 - opts.deviation_alpha) * deviation
                                 + opts.deviation_alpha * np.nan_to_num(r))
    flat = resid[~np.isnan(resid)]
    # Σ actual / Σ fitted median per calendar month: the ratio estimator of a sum's mean, which weights a
    # household by its level as the building's and the complex's totals do (a leak adds the same m³ to a
    # small flat as to a large one)
    median_fit = np.exp(level[:, None] + season[moy][None, :])
    seen = ~np.isnan(y)
    actual, fitted = np.where(seen, y, 0), np.where(seen, median_fit, 0)
    mean_ratio = np.array([np.sum(actual[:, moy == m]) / np.sum(fitted[:, moy == m]) for m in range(M)])
    # in-sample residuals are a little narrower than forecast errors: the level was fitted on them
    inflate = float(np.sqrt(1 + np.pi / 2 / max(float(np.median(counts)), 1)))
    centre_q = float(np.median(flat))
    quantiles = centre_q + (np.quantile(flat, QUANTILES) - centre_q) * inflate
    return PanelFit(season, level, deviation, mean_ratio, quantiles, int(moy[-1]), opts)


def forecast_panel(fit: PanelFit, h: int) -> list[Forecast]:
    """Every series' forecast 1..h months after the panel's last month (mean point, empirical intervals)."""
    months = (fit.end + 1 + np.arange(h)) % M
    damp = fit.options.deviation_phi ** np.arange(1, h + 1)
    median = np.exp(fit.level[:, None] + fit.season[months][None, :] + fit.deviation[:, None] * damp[None, :])
    point = median * fit.mean_ratio[months][None, :]
    lo95, lo80, hi80, hi95 = (median * np.exp(q) for q in fit.quantiles)
    return [Forecast(point[i], lo80[i], hi80[i], lo95[i], hi95[i]) for i in range(len(fit.level))]


def fitted_panel(fit: PanelFit, t: int) -> np.ndarray:
    """In-sample fitted means (series × the ``t`` months of the history)."""
    moy = (fit.end - t + 1 + np.arange(t)) % M
    fitted: np.ndarray = np.exp(fit.level[:, None] + fit.season[moy][None, :]) * fit.mean_ratio[moy][None, :]
    return fitted


def aggregate_interval(actual: np.ndarray, fitted: np.ndarray, point: np.ndarray) -> Forecast:
    """Intervals for a bottom-up sum (``point`` = Σ its members' forecasts) from the sum's own in-sample
    log errors (``actual`` against Σ its members' fitted means), which carry the members' correlation."""
    ok = ~np.isnan(actual) & (actual > 0) & (fitted > 0)
    r = np.log(actual[ok] / fitted[ok])
    if len(r) < 2:
        return Forecast(point, point.copy(), point.copy(), point.copy(), point.copy())
    # The season and the mean ratio were fitted on these very months, k years of each calendar month:
    # in-sample errors are narrower than the next year's by about √((k+1)/(k-1)) (k = 3: × 1.41)
    k = max(len(r) / M, 2.0)
    q = (np.quantile(r, QUANTILES) - np.median(r)) * np.sqrt((k + 1) / (k - 1))
    lo95, lo80, hi80, hi95 = (point * np.exp(v) for v in q)
    return Forecast(point, lo80, hi80, lo95, hi95)


@dataclass(frozen=True)
class Hierarchy:
    """Coherent forecasts of a complex: every household's, each group's (building) and the total, the
    groups and the total being the exact sums of their households' points (bottom-up)."""

    households: dict[int, Forecast]      # row of the panel → forecast (rows without history left out)
    groups: dict[object, Forecast]
    total: Forecast


def forecast_hierarchy(y: np.ndarray, first_month: int, groups: np.ndarray, h: int,
                       options: PooledOptions | None = None) -> Hierarchy:
    """Fit the household panel ``y`` (households × months; ``groups``: each household's building) and
    forecast every household, group and the total 1..h months ahead, reconciled bottom-up."""
    fit = fit_panel(y, first_month, options)
    fcs = forecast_panel(fit, h)
    known = ~np.isnan(fit.level)
    points = np.array([f.point for f in fcs])
    fitted = fitted_panel(fit, y.shape[1])

    def total_of(mask: np.ndarray) -> Forecast:
        # a plain sum stays nan in a month any member missed: the aggregate only learns from full months
        return aggregate_interval(y[mask].sum(axis=0), fitted[mask].sum(axis=0), points[mask].sum(axis=0))

    return Hierarchy(
        households={int(i): fcs[i] for i in np.flatnonzero(known)},
        groups={g: total_of(known & (groups == g)) for g in dict.fromkeys(groups.tolist())},
        total=total_of(known))
