"""The forecast job on Spark: one pandas UDF per series (``groupBy(...).applyInPandas``).

Series are households, buildings (sum of their households) and the complex (sum of all), per energy
type. The driver reads monthly usage from PostgreSQL, Spark fits and forecasts (or backtests) every
series in parallel, the driver writes the results back. Fitting is pure numpy (forecast/models.py).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import psycopg
from apt_energy.config.settings import SPARK_QUIET_LOG4J2, spark_driver_network
from apt_energy.forecast.backtest import Error, metrics, rolling_origin
from apt_energy.forecast.models import Model, fit_forecast
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

logger = logging.getLogger(__name__)

MODELS: tuple[Model, ...] = ("snaive", "ets")
KEYS = ["level", "series_id", "energy_type"]
FORECAST_SCHEMA = ("level string, series_id string, energy_type string, model string, horizon int, "
                   "target_month date, point double, lo80 double, hi80 double, lo95 double, hi95 double")
BACKTEST_SCHEMA = ("level string, series_id string, energy_type string, model string, origin int, horizon int, "
                   "actual double, point double, lo80 double, hi80 double, lo95 double, hi95 double, scale double")


def build_session(master: str, *, shuffle_partitions: int = 4, driver_host: str = "127.0.0.1") -> SparkSession:
    """A local SparkSession for the batch job (no connector jars needed). Workers run this interpreter,
    which has pandas and pyarrow (the system python may not). The driver listens on ``driver_host`` only."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # else a warning about the host's loopback name
    builder = SparkSession.builder
    for key, value in spark_driver_network(driver_host).items():
        builder = builder.config(key, value)
    return (builder.master(master).appName("apt-energy-forecast")
            .config("spark.pyspark.python", sys.executable)
            # the driver runs in this process: its log goes to the user's terminal, so only errors
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={SPARK_QUIET_LOG4J2}")
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            # pandas in and out through Arrow: row by row, moving ~100k monthly rows costs more than fitting
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate())


def read_usage(conn: psycopg.Connection) -> pd.DataFrame:
    """Monthly usage per household: device_id, building, energy_type (key), month, amount."""
    rows = conn.execute(
        """SELECT h.device_id, b.building_number, t.key, u.usage_date, u.amount
           FROM energy_usage u JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
           JOIN energy_types t ON t.label_ko = u.energy_type ORDER BY 1, 3, 4""").fetchall()
    return pd.DataFrame(rows, columns=["device_id", "building", "energy_type", "month", "amount"])


def series_frame(usage: pd.DataFrame, complex_id: str) -> pd.DataFrame:
    """Long frame (level, series_id, energy_type, month, amount) at the three aggregation levels.
    Building and complex totals only count months every member reported (no partial sums)."""
    house = usage.rename(columns={"device_id": "series_id"}).assign(level="household")
    members = usage.groupby(["building", "energy_type", "month"])["amount"].agg(["sum", "count"]).reset_index()
    full = members["count"] == members.groupby(["building", "energy_type"])["count"].transform("max")
    building = members[full].rename(columns={"sum": "amount"}).assign(
        level="building", series_id=lambda d: d["building"].astype(str))
    everyone = usage.groupby(["energy_type", "month"])["amount"].agg(["sum", "count"]).reset_index()
    everyone = everyone[everyone["count"] == everyone["count"].max()].rename(columns={"sum": "amount"})
    cx = everyone.assign(level="complex", series_id=complex_id)
    cols = [*KEYS, "month", "amount"]
    return pd.concat([house[cols], building[cols], cx[cols]], ignore_index=True).astype({"amount": float})


def _add_months(month: date, k: int) -> date:
    y, m = divmod(month.month - 1 + k, 12)
    return date(month.year + y, m + 1, 1)


def _forecast_series(pdf: pd.DataFrame, horizon: int) -> list[tuple[object, ...]]:
    pdf = pdf.sort_values("month")
    y = pdf["amount"].to_numpy(dtype=float)
    last = pdf["month"].iloc[-1]
    key = tuple(pdf[KEYS].iloc[0])
    out: list[tuple[object, ...]] = []
    for model in MODELS:
        try:
            fc = fit_forecast(model, y, horizon)
        except ValueError:
            continue   # too short a history: no forecast rather than a bad one
        for k in range(horizon):
            out.append((*key, model, k + 1, _add_months(last, k + 1), fc.point[k], fc.lo80[k], fc.hi80[k],
                        fc.lo95[k], fc.hi95[k]))
    return out


def forecast_group(horizon: int):  # type: ignore[no-untyped-def]
    """A pandas UDF over a bucket of whole series (one Spark group per bucket, not per series: a group
    costs an Arrow batch and a DataFrame, more than fitting a 36-month series)."""
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        out = [row for _, g in pdf.groupby(KEYS, sort=False) for row in _forecast_series(g, horizon)]
        return pd.DataFrame(out, columns=["level", "series_id", "energy_type", "model", "horizon", "target_month",
                                          "point", "lo80", "hi80", "lo95", "hi95"])
    return run


def backtest_group(windows: int, horizon: int):  # type: ignore[no-untyped-def]
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        out = []
        for _, g in pdf.groupby(KEYS, sort=False):
            y = g.sort_values("month")["amount"].to_numpy(dtype=float)
            key = tuple(g[KEYS].iloc[0])
            out += [(*key, model, *e) for model in MODELS
                    for e in rolling_origin(y, model, windows=windows, horizon=horizon)]
        return pd.DataFrame(out, columns=[*KEYS, "model", "origin", "horizon", "actual", "point", "lo80", "hi80",
                                          "lo95", "hi95", "scale"])
    return run


def _buckets(spark: SparkSession, series: pd.DataFrame) -> DataFrame:
    """Series spread over the shuffle partitions by a hash of their key (every month of a series lands
    in one bucket); about two buckets per partition keeps the tasks even and the progress visible."""
    n = 2 * int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    df = spark.createDataFrame(series)
    return df.withColumn("bucket", F.abs(F.hash(*KEYS)) % n)


def run_forecast(spark: SparkSession, series: pd.DataFrame, *, horizon: int = 3) -> pd.DataFrame:
    """Forecast every series ``horizon`` months past its last month, on Spark."""
    return (_buckets(spark, series).groupBy("bucket")
            .applyInPandas(forecast_group(horizon), schema=FORECAST_SCHEMA).toPandas())


def run_backtest(spark: SparkSession, series: pd.DataFrame, *, windows: int = 12, horizon: int = 3) -> pd.DataFrame:
    """Per (level, energy type, model): metrics over every series' rolling-origin errors."""
    errors = pd.DataFrame(_buckets(spark, series).groupBy("bucket").applyInPandas(
        backtest_group(windows, horizon), schema=BACKTEST_SCHEMA).toPandas())
    rows = []
    for (level, energy, model), g in errors.groupby(["level", "energy_type", "model"]):
        cols = ["origin", "horizon", "actual", "point", "lo80", "hi80", "lo95", "hi95", "scale"]
        m = metrics([Error(*t) for t in g[cols].itertuples(index=False, name=None)])
        rows.append({"level": level, "energy_type": energy, "model": model, "windows": int(g["origin"].nunique()),
                     "series": int(g["series_id"].nunique()), **m._asdict()})
    order = {"household": 0, "building": 1, "complex": 2}
    return pd.DataFrame(rows).sort_values(["level", "energy_type", "model"], key=lambda s: s.map(
        lambda v: order.get(v, v) if s.name == "level" else v)).reset_index(drop=True)


def store_forecasts(conn: psycopg.Connection, fc: pd.DataFrame, *, issued_at: datetime | None = None) -> int:
    """Write one issue of forecasts (COPY: an issue of 840 households × 12 months is ~60k rows)."""
    issued = issued_at or datetime.now(UTC)
    with conn.transaction(), conn.cursor() as cur, cur.copy(
            "COPY usage_forecasts (level, series_id, energy_type, target_month, model, horizon, point, lo80, hi80, "
            "lo95, hi95, issued_at) FROM STDIN") as copy:
        for r in fc.itertuples(index=False):
            copy.write_row((r.level, r.series_id, r.energy_type, r.target_month, r.model, int(r.horizon),
                            float(r.point), float(r.lo80), float(r.hi80), float(r.lo95), float(r.hi95), issued))
    return len(fc)


def store_backtest(conn: psycopg.Connection, table: pd.DataFrame) -> None:
    run_at = datetime.now(UTC)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO forecast_backtests (run_at, level, energy_type, model, windows, series, mase, smape, "
            "bias_pct, coverage80, coverage95) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            [(run_at, r.level, r.energy_type, r.model, int(r.windows), int(r.series), _f(r.mase), _f(r.smape),
              _f(r.bias_pct), _f(r.coverage80), _f(r.coverage95)) for r in table.itertuples(index=False)])


def _f(v: float) -> float | None:
    return None if v != v or np.isinf(v) else float(v)


def summary_lines(conn: psycopg.Connection, month: date) -> list[str]:
    """Lines for the demo's summary: the latest complex forecast for ``month`` per energy type (ETS)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (energy_type) energy_type, point, lo80, hi80, lo95, hi95
           FROM usage_forecasts WHERE level = 'complex' AND model = 'ets' AND target_month = %s
           ORDER BY energy_type, issued_at DESC""", (month,)).fetchall()
    return [f"forecast {month:%Y-%m} complex {e:<11} {p:,.0f} (80% {a:,.0f}–{b:,.0f}, 95% {c:,.0f}–{d:,.0f})"
            for e, p, a, b, c, d in rows]
