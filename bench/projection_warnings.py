"""How good are the projection rule's tier-3 warnings with each forecast model? A pure simulation of the
demo, without services: ``python -m bench.projection_warnings [--households N]``.

The demo's setup, replayed exactly: 36 months of history before 2024-01 (edge/profile.py, the history
import's noise for 12 h readings), forecasts issued at the stream's start for 1..12 months (ETS per
household, and the pooled model across households), then the streamed year's 12 h readings as the edge
fleet produces them (``FleetModel.interval_values``, the same counter-based draws). After every reading
the projection rule (rules/projection.py ``projection_alerts``, the configured tier bands 400 / Jul-Aug 450
kWh) looks at each household-month, once per household-month as the stream job does.

Printed per model: warnings, how many of them ended in tier 3 (precision), how many tier-3 months were
warned (recall) and the mean day of the month a warning came.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from apt_energy.config import load as load_settings
from apt_energy.edge.profile import FleetModel
from apt_energy.forecast.cli import history_totals
from apt_energy.forecast.models import ets
from apt_energy.forecast.pooled import fit_panel, forecast_panel
from apt_energy.rules import MonthSoFar, ProjectionOptions, projection_alerts
from apt_energy.spark.cli import projection_options

INTERVAL_S = 12 * 3600   # the demo's default reading interval
HISTORY_MONTHS = 36


def streamed_year(model: FleetModel, start: datetime, months: int) -> tuple[list[datetime], np.ndarray]:
    """(reading ends in UTC, readings × households electricity) of the streamed months."""
    k = model.meters.index("electricity")
    end = start.astimezone(UTC) + timedelta(seconds=INTERVAL_S)
    stop_month = date(start.year + (start.month - 1 + months) // 12, (start.month - 1 + months) % 12 + 1, 1)
    ends, values = [], []
    while True:
        local = (end - timedelta(seconds=INTERVAL_S)).astimezone(model.tz)
        if date(local.year, local.month, 1) >= stop_month:
            break
        ends.append(end)
        values.append(model.interval_values(end, INTERVAL_S)[:, k])
        end += timedelta(seconds=INTERVAL_S)
    return ends, np.array(values)


def warnings_of(forecast: dict[date, np.ndarray], ends: list[datetime], values: np.ndarray, tz: ZoneInfo,
                options: ProjectionOptions, *, every: int = 1
                ) -> tuple[dict[tuple[int, date], float], dict[tuple[int, date], float]]:
    """(household, month) → day the warning came; (household, month) → the month's total. The rule looks
    after every ``every`` readings (1: each reading; the fast demo's micro-batches hold several)."""
    n = values.shape[1]
    so_far: dict[date, np.ndarray] = {}
    warned: dict[tuple[int, date], float] = {}
    for i, (end, v) in enumerate(zip(ends, values, strict=True)):
        local_start = (end - timedelta(seconds=INTERVAL_S)).astimezone(tz)
        month = date(local_start.year, local_start.month, 1)
        so_far[month] = so_far.get(month, np.zeros(n)) + v
        if (i + 1) % every:
            continue
        month_start = datetime(month.year, month.month, 1, tzinfo=tz)
        days = (end - month_start).total_seconds() / 86400
        items = [MonthSoFar(h, "electricity", month, float(so_far[month][h]), days, float(forecast[month][h]))
                 for h in range(n) if (h, month) not in warned]
        for alert in projection_alerts(items, options):
            if alert.detail.get("kind") == "tier":
                warned[(alert.household_id, alert.period)] = days
    totals = {(h, m): float(t[h]) for m, t in so_far.items() for h in range(n)}
    return warned, totals


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--households", type=int, default=840)
    p.add_argument("--months", type=int, default=12)
    p.add_argument("--every", type=int, nargs="+", default=[1, 10],
                   help="the rule looks after every N readings of 12 h (1: each reading; 10: 5-day batches)")
    args = p.parse_args()
    settings = load_settings(environ={})
    households = settings.complex.households()[:args.households]
    first = date(2024, 1, 1)
    months, totals, model = history_totals(settings, households, until=first, months=HISTORY_MONTHS,
                                           interval_s=INTERVAL_S)
    k = model.meters.index("electricity")
    history = totals[:, :, k].T                                              # households × months
    h = args.months
    targets = [date(2024 + i // 12, i % 12 + 1, 1) for i in range(h)]
    by_model = {
        "ets": np.array([ets(y, h).point for y in history]),
        "pooled": np.array([f.point for f in forecast_panel(fit_panel(history, months[0].month - 1), h)]),
    }
    configured = projection_options(settings, first_year=2024, last_year=2024)   # the tariffs' bands by month
    assert configured is not None
    options = dataclasses.replace(configured, estimate_bill=None)
    limits = {m: options.tier_limits[m] for m in targets}
    ends, values = streamed_year(FleetModel.from_settings(settings, households),
                                 datetime(2024, 1, 1, tzinfo=model.tz), h)
    print(f"{len(households)} households × {h} months, {len(ends)} readings of 12 h; tier-3 warnings:")
    for every in args.every:
        for name, points in by_model.items():
            forecast = {m: points[:, i] for i, m in enumerate(targets)}
            warned, month_totals = warnings_of(forecast, ends, values, model.tz, options, every=every)
            tier3 = {key for key, total in month_totals.items() if math.floor(total) > limits[key[1]][1]}
            hits = tier3 & set(warned)
            precision = 100 * len(hits) / len(warned) if warned else float("nan")
            recall = 100 * len(hits) / len(tier3) if tier3 else float("nan")
            day = float(np.mean(list(warned.values()))) if warned else float("nan")
            print(f"  every {every * INTERVAL_S / 86400:4.1f} d  {name:<7} warnings {len(warned):5d}  "
                  f"tier-3 months {len(tier3):5d}  precision {precision:5.1f} %  recall {recall:5.1f} %  "
                  f"mean day {day:4.1f}")


if __name__ == "__main__":
    main()
