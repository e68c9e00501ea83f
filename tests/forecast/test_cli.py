"""The forecast CLI's live progress line and the demo's history frame."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

import numpy as np
import pytest
from apt_energy.forecast import job
from apt_energy.forecast.cli import SparkProgress, history_frame, history_totals

from apt_energy import config

pytestmark = pytest.mark.unit


class StageInfo(NamedTuple):
    numTasks: int
    numCompletedTasks: int


class Tracker:
    def __init__(self, stages: dict[int, StageInfo]) -> None:
        self.stages = stages

    def getActiveStageIds(self) -> list[int]:
        return list(self.stages)

    def getStageInfo(self, stage: int) -> StageInfo | None:
        return self.stages.get(stage)


def test_progress_line_counts_the_tasks_of_the_active_stages() -> None:
    line = SparkProgress(Tracker({3: StageInfo(32, 8), 4: StageInfo(8, 2)}), "forecast 2556 series").text()  # type: ignore[arg-type]
    assert line.endswith("forecast 2556 series: tasks 10/40 (25%)")
    assert SparkProgress(Tracker({}), "backtest").text().endswith("backtest: starting")  # type: ignore[arg-type]


def test_history_frame_gives_the_forecast_job_every_household_month_and_meter() -> None:
    settings = config.load(environ={})
    households = settings.complex.households()[:3]
    months, totals, model = history_totals(settings, households, until=date(2024, 1, 1), months=2, interval_s=86400)
    frame = history_frame(households, months, totals, model)
    assert months == [date(2023, 11, 1), date(2023, 12, 1)] and totals.shape == (2, 3, 3)
    assert len(frame) == 2 * 3 * 3 and set(frame["energy_type"]) == {"electricity", "heating", "water"}
    series = job.series_frame(frame, "t")
    assert set(series["level"]) == {"household", "building", "complex"}
    assert np.isclose(series[series["level"] == "complex"]["amount"].sum(), frame["amount"].sum())


def test_expected_month_is_the_households_factor_times_base_times_season() -> None:
    from apt_energy.edge.profile import FleetModel
    from apt_energy.forecast.cli import expected_months

    settings = config.load(environ={})
    households = settings.complex.households()[:4]
    months, totals, model = history_totals(settings, households, until=date(2024, 1, 1), months=12, interval_s=86400)
    frame = expected_months(settings, history_frame(households, months, totals, model))
    sim = settings.simulation.meters["heating"]
    factor = FleetModel.from_settings(settings, households).traits.factor[:4, model.meters.index("heating")]
    heat = frame[frame["energy_type"] == "heating"]
    for j, h in enumerate(households):
        mine = heat[heat["device_id"] == h.device_id].sort_values("month")
        want = factor[j] * sim.base_per_month * np.asarray(sim.season)
        assert np.allclose(mine["expected"], want)
        # the simulated months scatter around it (monthly noise ~6 %, an over-use month now and then)
        assert np.median(mine["amount"].to_numpy() / want) == pytest.approx(1.0, abs=0.05)
