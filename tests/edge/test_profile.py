"""The consumption model's shape and calibration (config/complex.yaml cites the sources)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from apt_energy.edge.profile import FleetModel, daily_profile

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})


def monthly_totals(model: FleetModel, year: int = 2024) -> dict[int, np.ndarray]:
    """Expected monthly consumption per household (hour by hour, before interval noise)."""
    tz = SETTINGS.complex.tz
    out = {}
    for month in range(1, 13):
        t = datetime(year, month, 1, tzinfo=tz)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
        total = np.zeros((model.n_all, len(model.meters)))
        while t < end:
            total += model.hourly_rate(t)
            t += timedelta(hours=1)
        out[month] = total
    return out


@pytest.fixture(scope="module")
def year() -> tuple[FleetModel, dict[int, np.ndarray]]:
    model = FleetModel.from_settings(SETTINGS, SETTINGS.complex.households())
    return model, monthly_totals(model)


def column(model: FleetModel, meter: str) -> int:
    return model.meters.index(meter)


def test_seasonal_shapes(year: tuple[FleetModel, dict[int, np.ndarray]]) -> None:
    model, totals = year
    mean = {m: [totals[mo][:, column(model, m)].mean() for mo in range(1, 13)] for m in model.meters}
    # heating peaks in January and is near zero in summer (hot water only)
    assert int(np.argmax(mean["heating"])) == 0
    assert max(mean["heating"][5:9]) < 0.1 * mean["heating"][0]
    # electricity peaks in August (air conditioning) with a smaller winter bump above spring/autumn
    assert int(np.argmax(mean["electricity"])) == 7
    assert mean["electricity"][0] > mean["electricity"][3] and mean["electricity"][0] < mean["electricity"][7]
    # water mildly higher in summer
    assert 1.05 < mean["water"][7] / mean["water"][0] < 1.35


def test_calibration_against_public_statistics(year: tuple[FleetModel, dict[int, np.ndarray]]) -> None:
    model, totals = year
    aug_kwh = totals[8][:, column(model, "electricity")].mean()
    assert 330 <= aug_kwh <= 400            # KEPCO: 363 kWh average in August 2024
    annual_kwh = sum(totals[m][:, column(model, "electricity")].mean() for m in range(1, 13))
    assert 2600 <= annual_kwh <= 3600       # ~250 kWh/month typical household
    jan_mcal = totals[1][:, column(model, "heating")].mean()
    assert 700 <= jan_mcal <= 2000          # winter heating bills at 90-110 KRW/Mcal
    water = np.mean([totals[m][:, column(model, "water")].mean() for m in range(1, 13)])
    assert 12 <= water <= 17                # Seoul: 8-21 m³/month by household size, ~14.5 weighted
    by_size = {k: np.mean([totals[m][model.traits.size == k, column(model, "water")].mean() for m in range(1, 13)])
               for k in range(1, 6)}
    assert by_size[1] < by_size[2] < by_size[3] < by_size[4] < by_size[5]
    assert 6 <= by_size[1] <= 10 and 17 <= by_size[5] <= 25


@pytest.mark.parametrize("meter", ["electricity", "heating", "water"])
def test_each_threshold_fires_on_one_to_five_percent_of_household_months(
        year: tuple[FleetModel, dict[int, np.ndarray]], meter: str) -> None:
    model, totals = year
    warning = SETTINGS.rules.thresholds[meter].warning
    rate = np.mean([(totals[m][:, column(model, meter)] >= warning).mean() for m in range(1, 13)])
    assert 0.005 <= rate <= 0.05, f"{meter}: {rate:.2%}"


def test_daily_profile_has_morning_and_evening_peaks_and_quiet_nights() -> None:
    water = daily_profile("water")
    assert water.mean() == pytest.approx(1.0)
    assert water[2:5].max() < 0.1 and water[7] > 1.5 and water[19] > 1.5
    electricity = daily_profile("electricity")
    assert int(np.argmax(electricity)) in (18, 19, 20) and electricity[3] < 0.5


def test_same_seed_gives_identical_readings_and_shards_agree_with_the_whole() -> None:
    households = SETTINGS.complex.households()
    end = datetime(2024, 3, 5, 6, tzinfo=UTC)
    whole = FleetModel.from_settings(SETTINGS, households).interval_values(end, 3600)
    again = FleetModel.from_settings(SETTINGS, households).interval_values(end, 3600)
    np.testing.assert_array_equal(whole, again)
    shard = FleetModel.from_settings(SETTINGS, households[1::4]).interval_values(end, 3600)
    np.testing.assert_array_equal(shard, whole[1::4])
    import dataclasses

    other = dataclasses.replace(SETTINGS, simulation=dataclasses.replace(SETTINGS.simulation, seed=7))
    assert not np.array_equal(FleetModel.from_settings(other, households).interval_values(end, 3600), whole)


def test_values_are_rounded_to_each_meters_decimals() -> None:
    values = FleetModel.from_settings(SETTINGS, SETTINGS.complex.households()[:50]).interval_values(
        datetime(2024, 8, 1, 12, tzinfo=UTC), 3600)
    for j, meter in enumerate(SETTINGS.energy):
        scale = 10 ** SETTINGS.energy[meter].decimals
        np.testing.assert_allclose(values[:, j] * scale, np.round(values[:, j] * scale), atol=1e-6)
    assert (values >= 0).all()


def test_leaks_keep_water_flowing_through_the_night() -> None:
    import dataclasses

    sim = SETTINGS.simulation
    always = dataclasses.replace(SETTINGS, simulation=dataclasses.replace(
        sim, anomalies=dataclasses.replace(sim.anomalies, leak_rate_per_month=1.0, leak_hours=(744, 744))))
    households = SETTINGS.complex.households()[:100]
    night = datetime(2024, 5, 10, 3, tzinfo=SETTINGS.complex.tz)
    j = list(SETTINGS.energy).index("water")
    normal = FleetModel.from_settings(SETTINGS, households).hourly_rate(night)[:100, j]
    model = FleetModel.from_settings(always, households)
    leaking = model.hourly_rate(night)[:100, j]
    started = model.month_anomalies(night).leak_start_h[:100] <= (night.day - 1) * 24 + night.hour
    flow = SETTINGS.rules.night_flow.min_flow_per_hour["water"]
    assert (normal < flow).mean() > 0.95
    assert started.sum() > 10
    assert (leaking[started] >= flow).all()
    assert (leaking[~started] < flow).mean() > 0.9
