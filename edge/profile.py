"""The consumption model: pure functions of (model parameters, household, time, seed), vectorised over a fleet.

Monthly mean for a household = base × season[month] × per_person[size] × habit, calibrated in
``config/complex.yaml`` against public Korean statistics. Within a month the rate follows a daily
profile (morning and evening peaks, night lows); each interval gets log-normal noise. Water leaks and
month-long over-use are drawn per household-month at configured rates.

Randomness is counter-based: every draw is seeded by (seed, purpose, month or interval end) and made
for the whole complex, then indexed. A household therefore produces the same readings whichever
shard runs it and whatever else the fleet does.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from apt_energy.config import Household, Settings
from apt_energy.config.settings import Simulation

HOUR = 3600

# Relative consumption by local hour (0-23); each is normalised to mean 1 below.
_DAILY = {
    # Electricity: night low, breakfast bump, evening peak (cooking, TV, air conditioning).
    "electricity": [0.55, 0.45, 0.40, 0.38, 0.38, 0.45, 0.75, 1.10, 1.10, 0.90, 0.85, 0.90,
                    0.95, 0.90, 0.90, 0.95, 1.05, 1.30, 1.60, 1.75, 1.70, 1.55, 1.20, 0.85],
    # District heating: floor heating runs through the night and morning, lowest mid-afternoon.
    "heating": [1.15, 1.15, 1.10, 1.10, 1.10, 1.15, 1.25, 1.20, 1.00, 0.85, 0.80, 0.75,
                0.75, 0.75, 0.75, 0.80, 0.85, 0.95, 1.05, 1.10, 1.15, 1.20, 1.20, 1.15],
    # Water: almost nothing at night, showers in the morning, cooking and washing in the evening.
    "water": [0.08, 0.04, 0.03, 0.03, 0.04, 0.25, 1.40, 1.90, 1.60, 1.10, 0.90, 0.90,
              1.00, 0.90, 0.80, 0.80, 0.90, 1.10, 1.50, 1.70, 1.70, 1.50, 1.10, 0.60],
}
_FLAT = [1.0] * 24


def daily_profile(meter: str) -> np.ndarray:
    shape = np.asarray(_DAILY.get(meter, _FLAT), dtype=float)
    normalised: np.ndarray = shape / shape.mean()
    return normalised


def month_index(local: datetime) -> int:
    """Months since year 0: a counter for per-month draws."""
    return local.year * 12 + local.month - 1


@dataclass(frozen=True)
class ModelParams:
    """What the consumption model reads from the settings: the simulation section, the meters with their
    decimals, the complex's time zone and its households (a household's row in every draw)."""

    meters: tuple[str, ...]
    decimals: tuple[int, ...]
    simulation: Simulation
    timezone: str
    households: tuple[Household, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelParams:
        return cls(meters=tuple(settings.energy), decimals=tuple(e.decimals for e in settings.energy.values()),
                   simulation=settings.simulation, timezone=settings.complex.timezone,
                   households=tuple(settings.complex.households()))


@dataclass(frozen=True)
class Households:
    """Per-household traits for the whole complex, drawn once from the seed."""

    size: np.ndarray        # (n,) persons 1..5
    factor: np.ndarray      # (n, meters) per_person × habit: the household's multiple of the base

    @classmethod
    def draw(cls, params: ModelParams, n: int) -> Households:
        sim = params.simulation
        rng = np.random.default_rng([sim.seed, 1])
        size = rng.choice(np.arange(1, 6), size=n, p=np.asarray(sim.household_size_weights))
        sigma = sim.habit_sigma
        habit = rng.lognormal(-sigma * sigma / 2, sigma, size=(n, len(params.meters)))
        per_person = np.stack([np.asarray(sim.meters[m].per_person)[size - 1] for m in params.meters], axis=1)
        return cls(size=size, factor=per_person * habit)


@dataclass(frozen=True)
class MonthAnomalies:
    """What goes wrong in one month, for every household of the complex."""

    leak_start_h: np.ndarray   # (n,) hour of the month a water leak starts, -1 for none
    leak_hours: np.ndarray     # (n,)
    overuse: np.ndarray        # (n, meters) multiplier, 1 where nothing happens


def draw_month_anomalies(params: ModelParams, n: int, local_month_start: datetime) -> MonthAnomalies:
    a = params.simulation.anomalies
    meters = list(params.meters)
    rng = np.random.default_rng([params.simulation.seed, 2, month_index(local_month_start)])
    hours_in_month = calendar.monthrange(local_month_start.year, local_month_start.month)[1] * 24
    leaking = rng.random(n) < a.leak_rate_per_month
    start = rng.integers(0, hours_in_month, size=n)
    length = rng.integers(a.leak_hours[0], a.leak_hours[1] + 1, size=n)
    overusing = rng.random(n) < a.overuse_rate_per_month
    # Over-use hits heating in the heating season and electricity otherwise.
    heating_season = local_month_start.month in (11, 12, 1, 2, 3)
    target = "heating" if heating_season and "heating" in meters else "electricity"
    factor = rng.uniform(a.overuse_factor[0], a.overuse_factor[1], size=n)
    overuse = np.ones((n, len(meters)))
    if target in meters:
        overuse[:, meters.index(target)] = np.where(overusing, factor, 1.0)
    return MonthAnomalies(np.where(leaking, start, -1), length, overuse)


class FleetModel:
    """Consumption for a set of households (a shard of the complex) over successive intervals."""

    def __init__(self, params: ModelParams, households: Sequence[Household],
                 complex_households: Sequence[Household] | None = None) -> None:
        self.params = params
        self.meters = list(params.meters)
        everyone = list(complex_households or params.households)
        position = {h.device_id: i for i, h in enumerate(everyone)}
        self.n_all = len(everyone)
        self.rows = np.asarray([position[h.device_id] for h in households], dtype=int)
        self.tz = ZoneInfo(params.timezone)
        self.traits = Households.draw(params, self.n_all)
        self.profiles = np.stack([daily_profile(m) for m in self.meters])        # (meters, 24)
        self.decimals = list(params.decimals)
        self._months: dict[int, MonthAnomalies] = {}

    @classmethod
    def from_settings(cls, settings: Settings, households: Sequence[Household],
                      complex_households: Sequence[Household] | None = None) -> FleetModel:
        """The model of ``households`` (a shard of the complex) with the settings' simulation parameters."""
        return cls(ModelParams.from_settings(settings), households, complex_households)

    def month_anomalies(self, local: datetime) -> MonthAnomalies:
        key = month_index(local)
        if key not in self._months:
            start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            self._months = {key: draw_month_anomalies(self.params, self.n_all, start)}
        return self._months[key]

    def monthly_base(self, local: datetime) -> np.ndarray:
        """(meters,) complex-wide base for the month, before household factors."""
        sim = self.params.simulation
        return np.asarray([sim.meters[m].base_per_month * sim.meters[m].season[local.month - 1]
                           for m in self.meters])

    def hourly_rate(self, local_hour_start: datetime) -> np.ndarray:
        """(n_all, meters) expected consumption per hour for the hour starting at this local time."""
        days = calendar.monthrange(local_hour_start.year, local_hour_start.month)[1]
        base = self.monthly_base(local_hour_start) / (days * 24)
        anomalies = self.month_anomalies(local_hour_start)
        rate = self.traits.factor * base * self.profiles[:, local_hour_start.hour] * anomalies.overuse
        if "water" in self.meters:
            hour_of_month = (local_hour_start.day - 1) * 24 + local_hour_start.hour
            leaking = (anomalies.leak_start_h >= 0) & (anomalies.leak_start_h <= hour_of_month) & (
                hour_of_month < anomalies.leak_start_h + anomalies.leak_hours)
            rate[:, self.meters.index("water")] += np.where(
                leaking, self.params.simulation.anomalies.leak_flow_m3_per_hour, 0.0)
        return rate  # type: ignore[no-any-return]

    def interval_values(self, end_utc: datetime, interval_s: int) -> np.ndarray:
        """(n, meters) consumption over ``[end - interval, end)`` for this shard's households, rounded to
        each meter's decimals."""
        start = end_utc - timedelta(seconds=interval_s)
        total = np.zeros((self.n_all, len(self.meters)))
        t = start
        while t < end_utc:
            local = t.astimezone(self.tz)
            hour_start = local.replace(minute=0, second=0, microsecond=0)
            segment_end = min(end_utc, (hour_start + timedelta(hours=1)).astimezone(end_utc.tzinfo))
            total += self.hourly_rate(hour_start) * ((segment_end - t).total_seconds() / HOUR)
            t = segment_end
        sigma = self.params.simulation.noise_sigma
        rng = np.random.default_rng([self.params.simulation.seed, 3, int(end_utc.timestamp()), interval_s])
        noise = rng.lognormal(-sigma * sigma / 2, sigma, size=total.shape)
        values = (total * noise)[self.rows]
        return np.stack([np.round(values[:, j], d) for j, d in enumerate(self.decimals)], axis=1)
