"""The forecast job on a real local Spark with a small deterministic complex (2 buildings × 3 households)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from apt_energy.forecast import job
from pyspark.sql import SparkSession

pytestmark = pytest.mark.spark

SEASON = np.array([1.18, 1.10, 1.00, 0.93, 0.95, 1.05, 1.38, 1.69, 1.25, 0.95, 1.00, 1.13])


def small_complex(months: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for b in (1, 2):
        for u in range(3):
            level = 200 + 40 * u
            for i in range(months):
                month = date(2021 + i // 12, i % 12 + 1, 1)
                amount = level * SEASON[i % 12] * rng.lognormal(0, 0.05)
                rows.append((f"t-{b:02d}-10{u + 1}", b, "electricity", month, amount))
    return pd.DataFrame(rows, columns=["device_id", "building", "energy_type", "month", "amount"])


def test_forecast_job_covers_every_series_level_model_and_horizon(spark: SparkSession) -> None:
    series = job.series_frame(small_complex(), "t")
    fc = job.run_forecast(spark, series, horizon=3)
    assert len(fc) == (6 + 2 + 1) * 3 * 3   # snaive, ets and the pooled model (issue 26)
    assert set(fc["target_month"]) == {date(2023, 7, 1), date(2023, 8, 1), date(2023, 9, 1)}
    assert (fc["lo95"] <= fc["lo80"]).all() and (fc["lo80"] <= fc["point"]).all()
    assert (fc["point"] <= fc["hi80"]).all() and (fc["hi80"] <= fc["hi95"]).all()
    cx = fc[(fc["level"] == "complex") & (fc["model"] == "snaive") & (fc["horizon"] == 1)]["point"].item()
    july_last_year = series[(series["level"] == "complex") & (series["month"] == date(2022, 7, 1))]["amount"].item()
    assert cx == pytest.approx(july_last_year)


def test_backtest_table_has_a_row_per_level_and_model_and_ets_beats_snaive(spark: SparkSession) -> None:
    table = job.run_backtest(spark, job.series_frame(small_complex(), "t"), windows=12, horizon=3)
    assert set(zip(table["level"], table["model"], strict=True)) == {
        (lvl, m) for lvl in ("household", "building", "complex") for m in ("snaive", "ets", "pooled")}
    hh = table[table["level"] == "household"].set_index("model")
    assert hh.loc["ets", "mase"] < hh.loc["snaive", "mase"]
    assert table["vs_limit"].isna().all()   # no expected month in the frame: no limit row


def test_pooled_forecasts_are_coherent_across_levels(spark: SparkSession) -> None:
    fc = job.run_forecast(spark, job.series_frame(small_complex(), "t"), horizon=3)
    pooled = fc[fc["model"] == "pooled"].copy()
    pooled["building"] = pooled["series_id"].str.slice(2, 4).str.lstrip("0")
    house = pooled[pooled["level"] == "household"]
    for b, g in house.groupby("building"):
        sums = g.groupby("horizon")["point"].sum()
        told = pooled[(pooled["level"] == "building") & (pooled["series_id"] == b)].set_index("horizon")["point"]
        assert np.allclose(told.sort_index(), sums.sort_index(), rtol=1e-12)
    cx = pooled[pooled["level"] == "complex"].set_index("horizon")["point"].sort_index()
    assert np.allclose(cx, house.groupby("horizon")["point"].sum().sort_index(), rtol=1e-12)


def test_backtest_scores_the_expected_month_as_the_limit_row(spark: SparkSession) -> None:
    usage = small_complex(months=36)
    level = 200 + 40 * usage["device_id"].str[-1].astype(int).sub(1)
    usage["expected"] = level * SEASON[[m.month - 1 for m in usage["month"]]]
    table = job.run_backtest(spark, job.series_frame(usage, "t"), windows=6, horizon=2)
    limit = table[table["model"] == "limit"].set_index("level")
    assert set(limit.index) == {"household", "building", "complex"}
    assert (limit["vs_limit"] == 1.0).all() and limit["coverage80"].isna().all()
    hh = table[table["level"] == "household"].set_index("model")
    # noise only, one shared season: the pooled model lands near the limit (6 × 6 × 2 errors: loose bound)
    assert hh.loc["pooled", "vs_limit"] < 1.15 and hh.loc["pooled", "vs_limit"] < hh.loc["snaive", "vs_limit"]
