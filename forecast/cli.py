"""``apt-energy history import``: give the complex its past (monthly usage from the consumption model).

Application layer: composes the edge stage's consumption model (edge/profile.py) with the forecast
stage's importer, which may not import another stage.
"""

from __future__ import annotations

import argparse
import calendar
import math
import threading
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from apt_energy.app.progress import StatusLine
from apt_energy.config import Household, Settings
from apt_energy.config import load as load_settings
from apt_energy.database.connection import connect
from apt_energy.edge.profile import FleetModel
from apt_energy.forecast import job
from apt_energy.forecast.history import import_months
from apt_energy.forecast.models import MAX_HORIZON
from pyspark import StatusTracker
from pyspark.sql import SparkSession

M_MIN_SIMULATED = 16   # the per-series models need > 13 months before the first origin


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("history", help="import past monthly usage (simulated by the same consumption model)")
    p.add_argument("action", choices=["import"])
    p.add_argument("--until", default="2024-01", metavar="YYYY-MM",
                   help="first month NOT imported (the demo's streamed start, default 2024-01)")
    p.add_argument("--months", type=int, default=36, help="months before --until (default 36)")
    p.add_argument("--interval", type=int, default=86400,
                   help="the streamed meter interval in s; sets the month's noise to match summed readings")
    p.set_defaults(func=run)
    f = sub.add_parser("forecast", help="forecast monthly usage on Spark (household, building, complex); backtest",
                       description="run: forecast every series 1..--horizon months ahead into usage_forecasts. "
                                   "backtest: rolling origin, MASE (m=12) / sMAPE / bias / coverage per level.")
    f.add_argument("action", choices=["run", "backtest"])
    f.add_argument("--horizon", type=bounded_int(1, MAX_HORIZON, "months ahead"), default=3,
                   help=f"months ahead, 1..{MAX_HORIZON} (default 3)")
    f.add_argument("--windows", type=bounded_int(1, 120, "backtest origins"), default=12,
                   help="backtest origins (default 12)")
    f.add_argument("--simulate", type=bounded_int(M_MIN_SIMULATED, 240, "simulated months"), metavar="MONTHS",
                   help="backtest only: on MONTHS months simulated for the complex (edge/profile.py, no database "
                        "read), e.g. 48; the limit row is scored whenever the history is simulated")
    f.add_argument("--households", type=bounded_int(1, 100_000, "households"), metavar="N",
                   help="with --simulate: only the first N households (measure on a subset first)")
    f.set_defaults(func=run_forecast_command)


def bounded_int(low: int, high: int, what: str):  # type: ignore[no-untyped-def]
    """An argparse type: an integer in [low, high], else one line naming the range (argparse prints it
    as ``argument --flag: …`` and exits 2), before any Spark starts."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be an integer from {low} to {high}, got {text!r}")
        return value
    return parse


def month_starts(until: date, months: int) -> list[date]:
    out = []
    y, m = until.year, until.month
    for _ in range(months):
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
        out.append(date(y, m, 1))
    return out[::-1]


def simulated_totals(model: FleetModel, months: list[date], interval_s: int) -> np.ndarray:
    """(months, households, meters) expected monthly totals from the hourly model, with the noise a month
    of summed readings keeps: each interval's log-normal noise averages to σ/√(intervals in the month)."""
    sim = model.params.simulation
    out = np.zeros((len(months), len(model.rows), len(model.meters)))
    for i, month in enumerate(months):
        days = calendar.monthrange(month.year, month.month)[1]
        start = datetime(month.year, month.month, 1, tzinfo=model.tz)
        total: np.ndarray = np.sum([model.hourly_rate(start + timedelta(hours=h)) for h in range(days * 24)], axis=0)
        sigma = sim.noise_sigma / math.sqrt(max(1, days * 86400 // interval_s))
        rng = np.random.default_rng([sim.seed, 7, month.year * 12 + month.month - 1])
        noise = rng.lognormal(-sigma * sigma / 2, sigma, size=total.shape)
        out[i] = (total * noise)[model.rows]
    return out


def history_totals(settings: Settings, households: Sequence[Household], *, until: date, months: int,
                   interval_s: int) -> tuple[list[date], np.ndarray, FleetModel]:
    """The ``months`` before ``until`` simulated for ``households``: (months, totals, the model)."""
    starts = month_starts(until, months)
    model = FleetModel.from_settings(settings, households)
    return starts, simulated_totals(model, starts, interval_s), model


def expected_months(settings: Settings, usage: pd.DataFrame) -> pd.DataFrame:
    """``usage`` with the simulator's expected month per row (household factor × base × season,
    edge/profile.py; no noise, no anomalies): the best forecast possible of simulated usage."""
    by_id = {h.device_id: h for h in settings.complex.households()}
    ids = [d for d in dict.fromkeys(usage["device_id"]) if d in by_id]
    model = FleetModel.from_settings(settings, [by_id[d] for d in ids])
    factor = model.traits.factor[model.rows]                                   # (households, meters)
    row = {d: i for i, d in enumerate(ids)}
    meter = {m: k for k, m in enumerate(model.meters)}
    base = {m: model.monthly_base(datetime(m.year, m.month, 1, tzinfo=model.tz)) for m in set(usage["month"])}
    expected = [factor[row[d], meter[e]] * base[m][meter[e]] if d in row and e in meter else float("nan")
                for d, e, m in zip(usage["device_id"], usage["energy_type"], usage["month"], strict=True)]
    return usage.assign(expected=expected)


def simulated_history(settings: Settings) -> bool:
    """Whether the stored history is this configuration's simulation (the import's source names the
    seed): only then does the limit row mean anything."""
    with connect(settings) as conn:
        sources = {r[0] for r in conn.execute("SELECT DISTINCT source FROM usage_imports").fetchall()}
    return sources == {f"simulated-history seed={settings.simulation.seed}"}


def history_frame(households: Sequence[Household], months: Sequence[date], totals: np.ndarray,
                  model: FleetModel) -> pd.DataFrame:
    """Simulated history as :func:`job.read_usage` returns usage (device_id, building, energy_type, month,
    amount): forecasts can be issued from it before anything is stored."""
    return pd.DataFrame(
        [(h.device_id, h.building, meter, month, round(float(totals[i, j, k]), model.decimals[k]))
         for i, month in enumerate(months) for j, h in enumerate(households) for k, meter in enumerate(model.meters)],
        columns=["device_id", "building", "energy_type", "month", "amount"])


def import_history(settings: Settings, households: Sequence[Household], *, until: date, months: int,
                   interval_s: int) -> int:
    """Simulate and import the history into energy_usage (marked in usage_imports); rows inserted."""
    starts, totals, model = history_totals(settings, households, until=until, months=months, interval_s=interval_s)
    with connect(settings) as conn:
        return import_months(conn, device_ids=[h.device_id for h in households], meters=model.meters, months=starts,
                             totals=totals, decimals=model.decimals,
                             source=f"simulated-history seed={settings.simulation.seed}")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    until = date.fromisoformat(f"{args.until}-01")
    households = settings.complex.households()
    print(f"history: simulating {len(households)} households × {args.months} months before {until:%Y-%m} …",
          flush=True)
    n = import_history(settings, households, until=until, months=args.months, interval_s=args.interval)
    print(f"history imported: {n} rows (months that already had usage were left alone)")
    return 0


class SparkProgress:
    """A live line for a long Spark action: tasks done of the active stages, refreshed once a second
    (in place on a terminal, every 10 s in a log; :class:`apt_energy.app.progress.StatusLine`)."""

    def __init__(self, tracker: StatusTracker, what: str) -> None:
        self.tracker = tracker          # SparkContext.statusTracker()
        self.what = what
        self.status = StatusLine()
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forecast-progress", daemon=True)

    def text(self) -> str:
        done = total = 0
        for stage in self.tracker.getActiveStageIds():
            info = self.tracker.getStageInfo(stage)
            if info is not None:
                done, total = done + info.numCompletedTasks, total + info.numTasks
        tasks = f"tasks {done}/{total} ({100 * done / total:.0f}%)" if total else "starting"
        return f"[{time.monotonic() - self.started:5.0f}s] {self.what}: {tasks}"

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.status.show(self.text())

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.status.done()


def forecast_spark(settings: Settings) -> SparkSession:
    """The batch job's local Spark (a partition per ~100 series is enough to show progress)."""
    return job.build_session(settings.spark.master, shuffle_partitions=max(settings.spark.shuffle_partitions, 16),
                             driver_host=settings.spark.driver_host)


def issue_forecasts(settings: Settings, spark: SparkSession, series: pd.DataFrame, *, horizon: int,
                    issued_at: datetime | None = None) -> pd.DataFrame:
    """Forecast every series ``horizon`` months ahead on Spark (with a progress line) and store them."""
    what = f"forecast {series.groupby(job.KEYS).ngroups} series × {len(job.MODELS)} models"
    with SparkProgress(spark.sparkContext.statusTracker(), what):
        fc = job.run_forecast(spark, series, horizon=horizon)
    with connect(settings) as conn:
        job.store_forecasts(conn, fc, issued_at=issued_at)
    return fc


def backtest_usage(settings: Settings, args: argparse.Namespace) -> pd.DataFrame:
    """The backtest's usage: simulated in memory (``--simulate``) or read from the database, with the
    expected month whenever the history is the simulator's."""
    if args.simulate:
        households = settings.complex.households()[:args.households]
        starts, totals, model = history_totals(settings, households, until=date(2024, 1, 1), months=args.simulate,
                                               interval_s=86400)
        return expected_months(settings, history_frame(households, starts, totals, model))
    with connect(settings) as conn:
        usage = job.read_usage(conn)
    return expected_months(settings, usage) if simulated_history(settings) else usage


def run_forecast_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "backtest":
        usage = backtest_usage(settings, args)
    else:
        with connect(settings) as conn:
            usage = job.read_usage(conn)
    series = job.series_frame(usage, settings.complex.id)
    print(f"forecast: {series.groupby(job.KEYS).ngroups} series, {usage['month'].nunique()} months; starting Spark …",
          flush=True)
    spark = forecast_spark(settings)
    try:
        if args.action == "run":
            fc = issue_forecasts(settings, spark, series, horizon=args.horizon)
            print(f"usage_forecasts: {len(fc)} rows")
            cx = fc[(fc["level"] == "complex") & (fc["model"] == job.POOLED)]
            for r in cx.sort_values(["energy_type", "horizon"]).itertuples(index=False):
                print(f"  complex {r.energy_type:<11} {r.target_month:%Y-%m} {r.point:,.0f} "
                      f"(80% {r.lo80:,.0f}–{r.hi80:,.0f}, 95% {r.lo95:,.0f}–{r.hi95:,.0f})")
            return 0
        what = f"backtest {args.windows} windows × {series.groupby(job.KEYS).ngroups} series"
        with SparkProgress(spark.sparkContext.statusTracker(), what):
            table = job.run_backtest(spark, series, windows=args.windows, horizon=args.horizon)
        if not args.simulate:
            with connect(settings) as conn:
                job.store_backtest(conn, table)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–"))
        return 0
    finally:
        spark.stop()
