"""The forecast job on Spark: one pandas UDF per series (``groupBy(...).applyInPandas``).

Series are households, buildings (sum of their households) and the complex (sum of all), per energy
type. The driver reads monthly usage from PostgreSQL, Spark fits and forecasts (or backtests) every
series in parallel, the driver writes the results back. Fitting is pure numpy (forecast/models.py,
forecast/pooled.py). The per-series baselines (snaive, ETS) run over buckets of series; the pooled model
learns across households, so it runs over each energy type's household panel and reconciles the
buildings and the complex bottom-up in the same task.
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
from apt_energy.forecast.backtest import Error, limit_errors, metrics, rolling_origin
from apt_energy.forecast.models import Forecast, M, Model, fit_forecast
from apt_energy.forecast.pooled import Hierarchy, forecast_hierarchy
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

logger = logging.getLogger(__name__)

PER_SERIES: tuple[Model, ...] = ("snaive", "ets")   # fitted on each series alone (the baselines)
POOLED: Model = "pooled"                            # fitted across the households of an energy type
MODELS: tuple[Model, ...] = (*PER_SERIES, POOLED)
LIMIT = "limit"   # the backtest's row for the simulator's expected month (the best forecast possible)
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
    """Long frame (level, series_id, energy_type, month, amount, building) at the three aggregation levels;
    ``building`` is a household's building (the pooled model's groups), empty above. Building and complex
    totals only count months every member reported (no partial sums). An ``expected`` column in ``usage``
    (the simulator's expected month, for the backtest's limit row) is carried and summed the same way."""
    values = ["amount", *(["expected"] if "expected" in usage.columns else [])]
    house = usage.rename(columns={"device_id": "series_id"}).assign(
        level="household", building=lambda d: d["building"].astype(str))
    members = usage.groupby(["building", "energy_type", "month"])[values].sum().join(
        usage.groupby(["building", "energy_type", "month"]).size().rename("count")).reset_index()
    full = members["count"] == members.groupby(["building", "energy_type"])["count"].transform("max")
    building = members[full].assign(level="building", series_id=lambda d: d["building"].astype(str), building="")
    everyone = usage.groupby(["energy_type", "month"])[values].sum().join(
        usage.groupby(["energy_type", "month"]).size().rename("count")).reset_index()
    everyone = everyone[everyone["count"] == everyone["count"].max()]
    cx = everyone.assign(level="complex", series_id=complex_id, building="")
    cols = [*KEYS, "month", *values, "building"]
    return pd.concat([house[cols], building[cols], cx[cols]], ignore_index=True).astype(dict.fromkeys(values, float))


def _add_months(month: date, k: int) -> date:
    y, m = divmod(month.month - 1 + k, 12)
    return date(month.year + y, m + 1, 1)


def _forecast_series(pdf: pd.DataFrame, horizon: int) -> list[tuple[object, ...]]:
    pdf = pdf.sort_values("month")
    y = pdf["amount"].to_numpy(dtype=float)
    last = pdf["month"].iloc[-1]
    key = tuple(pdf[KEYS].iloc[0])
    out: list[tuple[object, ...]] = []
    for model in PER_SERIES:
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


BACKTEST_COLUMNS = [*KEYS, "model", "origin", "horizon", "actual", "point", "lo80", "hi80", "lo95", "hi95", "scale"]
FORECAST_COLUMNS = [*KEYS, "model", "horizon", "target_month", "point", "lo80", "hi80", "lo95", "hi95"]


def backtest_group(windows: int, horizon: int):  # type: ignore[no-untyped-def]
    """Rolling-origin errors of the per-series models (and of the limit, where the frame has the
    simulator's expected month) over a bucket of whole series."""
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        out = []
        for _, g in pdf.groupby(KEYS, sort=False):
            g = g.sort_values("month")
            y = g["amount"].to_numpy(dtype=float)
            key = tuple(g[KEYS].iloc[0])
            out += [(*key, model, *e) for model in PER_SERIES
                    for e in rolling_origin(y, model, windows=windows, horizon=horizon)]
            if "expected" in g.columns and g["expected"].notna().all():
                expected = g["expected"].to_numpy(dtype=float)
                out += [(*key, LIMIT, *e) for e in limit_errors(y, expected, windows=windows, horizon=horizon)]
        return pd.DataFrame(out, columns=BACKTEST_COLUMNS)
    return run


def _panel(pdf: pd.DataFrame) -> tuple[list[str], np.ndarray, list[date], np.ndarray]:
    """Household rows of one energy type as a panel: (device ids, their buildings, the months from the
    first to the last without gaps, households × months amounts with nan where a household has none)."""
    wide = pdf.pivot_table(index="series_id", columns="month", values="amount", aggfunc="sum")
    first, last = min(wide.columns), max(wide.columns)
    months = [_add_months(first, k) for k in range((last.year - first.year) * 12 + last.month - first.month + 1)]
    wide = wide.reindex(columns=months)
    buildings = pdf.drop_duplicates("series_id").set_index("series_id")["building"].reindex(wide.index)
    return list(wide.index), buildings.to_numpy(dtype=object), months, wide.to_numpy(dtype=float)


def _tree_rows(tree: Hierarchy, ids: list[str], complex_id: str) -> list[tuple[str, str, Forecast]]:
    """(level, series_id, forecast) of every series of a reconciled hierarchy."""
    return ([("household", ids[i], f) for i, f in tree.households.items()]
            + [("building", str(b), f) for b, f in tree.groups.items()] + [("complex", complex_id, tree.total)])


def pooled_forecast_group(complex_id: str, horizon: int):  # type: ignore[no-untyped-def]
    """A pandas UDF over every household of one energy type: the pooled model learns across them, so
    its Spark group is the energy type's panel (~40k rows for 840 households × 48 months), not a bucket."""
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        ids, buildings, months, y = _panel(pdf)
        energy = pdf["energy_type"].iloc[0]
        out = []
        if len(months) >= M:
            tree = forecast_hierarchy(y, months[0].month - 1, buildings, horizon)
            for level, series_id, fc in _tree_rows(tree, ids, complex_id):
                for k in range(horizon):
                    out.append((level, series_id, energy, POOLED, k + 1, _add_months(months[-1], k + 1),
                                *(float(getattr(fc, c)[k]) for c in ("point", "lo80", "hi80", "lo95", "hi95"))))
        return pd.DataFrame(out, columns=FORECAST_COLUMNS)
    return run


def pooled_backtest_group(complex_id: str, windows: int, horizon: int):  # type: ignore[no-untyped-def]
    """Rolling-origin errors of the pooled model at all three levels (the same origins as the per-series
    models: each trains on the months before it, households, buildings and complex reconciled)."""
    def run(pdf: pd.DataFrame) -> pd.DataFrame:
        ids, buildings, months, y = _panel(pdf)
        energy = pdf["energy_type"].iloc[0]
        n = len(months)
        actual = {("household", i): y[j] for j, i in enumerate(ids)}
        actual |= {("building", str(b)): y[buildings == b].sum(axis=0) for b in dict.fromkeys(buildings.tolist())}
        actual[("complex", complex_id)] = y.sum(axis=0)
        out = []
        for origin in range(max(M + 2, n - horizon - windows + 1), n - horizon + 1):
            tree = forecast_hierarchy(y[:, :origin], months[0].month - 1, buildings, horizon)
            for level, series_id, fc in _tree_rows(tree, ids, complex_id):
                series = actual[(level, series_id)]
                train = series[:origin]
                scale = float(np.mean(np.abs(train[M:] - train[:-M])))
                for k in range(horizon):
                    if np.isnan(series[origin + k]) or np.isnan(scale):
                        continue
                    out.append((level, series_id, energy, POOLED, origin, k + 1, float(series[origin + k]),
                                *(float(getattr(fc, c)[k]) for c in ("point", "lo80", "hi80", "lo95", "hi95")),
                                scale))
        return pd.DataFrame(out, columns=BACKTEST_COLUMNS)
    return run


def _buckets(spark: SparkSession, series: pd.DataFrame) -> DataFrame:
    """Series spread over the shuffle partitions by a hash of their key (every month of a series lands
    in one bucket); about two buckets per partition keeps the tasks even and the progress visible."""
    n = 2 * int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    df = spark.createDataFrame(series)
    return df.withColumn("bucket", F.abs(F.hash(*KEYS)) % n)


def _households(spark: SparkSession, series: pd.DataFrame) -> DataFrame:
    """The household series, for the pooled model's panels (one Spark group per energy type)."""
    house = series[series["level"] == "household"][["series_id", "building", "energy_type", "month", "amount"]]
    return spark.createDataFrame(house)


def _complex_id(series: pd.DataFrame) -> str:
    ids = series.loc[series["level"] == "complex", "series_id"]
    return str(ids.iloc[0]) if len(ids) else "complex"


def run_forecast(spark: SparkSession, series: pd.DataFrame, *, horizon: int = 3) -> pd.DataFrame:
    """Forecast every series ``horizon`` months past its last month, on Spark: the per-series models
    over buckets of series, the pooled model over each energy type's households (reconciled)."""
    per_series = (_buckets(spark, series).groupBy("bucket")
                  .applyInPandas(forecast_group(horizon), schema=FORECAST_SCHEMA))
    pooled = (_households(spark, series).groupBy("energy_type")
              .applyInPandas(pooled_forecast_group(_complex_id(series), horizon), schema=FORECAST_SCHEMA))
    return pd.DataFrame(per_series.unionByName(pooled).toPandas())


def run_backtest(spark: SparkSession, series: pd.DataFrame, *, windows: int = 12, horizon: int = 3) -> pd.DataFrame:
    """Per (level, energy type, model): metrics over every series' rolling-origin errors, with each
    model's MASE as a ratio to the limit's (``vs_limit``) where the frame has the expected month."""
    per_series = _buckets(spark, series).groupBy("bucket").applyInPandas(
        backtest_group(windows, horizon), schema=BACKTEST_SCHEMA)
    pooled = _households(spark, series).groupBy("energy_type").applyInPandas(
        pooled_backtest_group(_complex_id(series), windows, horizon), schema=BACKTEST_SCHEMA)
    errors = pd.DataFrame(per_series.unionByName(pooled).toPandas())
    rows = []
    for (level, energy, model), g in errors.groupby(["level", "energy_type", "model"]):
        cols = ["origin", "horizon", "actual", "point", "lo80", "hi80", "lo95", "hi95", "scale"]
        m = metrics([Error(*t) for t in g[cols].itertuples(index=False, name=None)])
        rows.append({"level": level, "energy_type": energy, "model": model, "windows": int(g["origin"].nunique()),
                     "series": int(g["series_id"].nunique()), **m._asdict()})
    order = {"household": 0, "building": 1, "complex": 2, **{m: i for i, m in enumerate((*MODELS, LIMIT))}}
    table = pd.DataFrame(rows).sort_values(["level", "energy_type", "model"], key=lambda s: s.map(
        lambda v: order.get(v, v) if s.name != "energy_type" else v)).reset_index(drop=True)
    limit = table[table["model"] == LIMIT].set_index(["level", "energy_type"])["mase"]
    table["vs_limit"] = [row.mase / limit.get((row.level, row.energy_type), float("nan"))
                         for row in table.itertuples(index=False)]
    return table


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


def summary_lines(conn: psycopg.Connection, month: date, *, model: str = POOLED) -> list[str]:
    """Lines for the demo's summary: the latest complex forecast for ``month`` per energy type (the pooled
    model's is the sum of what each household is told)."""
    rows = conn.execute(
        """SELECT DISTINCT ON (energy_type) energy_type, point, lo80, hi80, lo95, hi95
           FROM usage_forecasts WHERE level = 'complex' AND model = %s AND target_month = %s
           ORDER BY energy_type, issued_at DESC""", (model, month)).fetchall()
    return [f"forecast {month:%Y-%m} complex {e:<11} {p:,.0f} (80% {a:,.0f}–{b:,.0f}, 95% {c:,.0f}–{d:,.0f})"
            for e, p, a, b, c, d in rows]
