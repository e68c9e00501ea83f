"""Tariffs from ``config/tariffs.yaml``: dated rates with their sources, typed and frozen.

A rate is a list of ``(valid_from, value)`` entries; :func:`Dated.at` picks the one in force on a day,
and :func:`Dated.day_weighted` blends the rates over a month that spans a change (KEPCO prorates by days).
"""

from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from apt_energy.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "tariffs.yaml"


@dataclass(frozen=True)
class Dated:
    """One rate over time: entries sorted by ``valid_from``."""

    entries: tuple[tuple[date, Decimal, str], ...]

    def at(self, day: date) -> Decimal:
        """The value in force on ``day``."""
        value = None
        for valid_from, v, _ in self.entries:
            if valid_from <= day:
                value = v
        if value is None:
            raise ConfigError(f"tariffs: no rate in force on {day} (first valid_from {self.entries[0][0]})")
        return value

    def day_weighted(self, month: date) -> Decimal:
        """Mean of the daily rates over the calendar month starting at ``month`` (exact Decimal)."""
        days = calendar.monthrange(month.year, month.month)[1]
        total = sum((self.at(month + timedelta(days=d)) for d in range(days)), Decimal(0))
        return total / days


@dataclass(frozen=True)
class ElectricityTier:
    valid_from: date
    source: str
    summer_months: tuple[int, ...]
    bands: tuple[int, int]
    summer_bands: tuple[int, int]
    base_krw: tuple[Decimal, Decimal, Decimal]
    energy_krw_per_kwh: tuple[Decimal, Decimal, Decimal]

    def bands_for(self, month: date) -> tuple[int, int]:
        return self.summer_bands if month.month in self.summer_months else self.bands


@dataclass(frozen=True)
class ElectricityTariff:
    tiers: tuple[ElectricityTier, ...]
    climate: Dated
    fuel: Dated
    vat: Dated
    fund_levy: Dated

    def tier_table(self, month: date) -> ElectricityTier:
        """The tier table in force on the month's first day."""
        return _in_force(self.tiers, month, "electricity.tiers")


@dataclass(frozen=True)
class HeatingTariff:
    base_krw_per_m2: Dated
    energy_krw_per_mcal: Dated
    vat: Dated
    contract_area_m2: Decimal


@dataclass(frozen=True)
class WaterTable:
    valid_from: date
    bands: tuple[int, int]
    water: tuple[Decimal, Decimal, Decimal]
    sewerage: tuple[Decimal, Decimal, Decimal]
    levy: Decimal


@dataclass(frozen=True)
class WaterTariff:
    tables: tuple[WaterTable, ...]

    def table(self, month: date) -> WaterTable:
        """The table in force on the month's first day."""
        return _in_force(self.tables, month, "water.tariffs")


class _Dated(Protocol):
    @property
    def valid_from(self) -> date: ...


_T = TypeVar("_T", bound=_Dated)


def _in_force(tables: tuple[_T, ...], day: date, key: str) -> _T:
    """The last of ``tables`` (sorted by ``valid_from``) in force on ``day``."""
    found = [t for t in tables if t.valid_from <= day]
    if not found:
        raise ConfigError(f"tariffs: {key}: none in force on {day}")
    return found[-1]


@dataclass(frozen=True)
class Tariffs:
    electricity: ElectricityTariff
    heating: HeatingTariff
    water: WaterTariff


def _dec(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"tariffs: {key}: expected a number, got {value!r}")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise ConfigError(f"tariffs: {key}: expected a number, got {value!r}") from None


def _date(value: Any, key: str) -> date:
    if not isinstance(value, date):
        raise ConfigError(f"tariffs: {key}: expected a date YYYY-MM-DD, got {value!r}")
    return value


def _triple(values: Any, key: str) -> tuple[Decimal, Decimal, Decimal]:
    if not isinstance(values, list) or len(values) != 3:
        raise ConfigError(f"tariffs: {key}: expected a list of 3 numbers (tiers 1-3), got {values!r}")
    a, b, c = (_dec(v, key) for v in values)
    return a, b, c


def _pair(values: Any, key: str) -> tuple[int, int]:
    if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, int) for v in values)
            and 0 < values[0] < values[1]):
        raise ConfigError(f"tariffs: {key}: expected two increasing whole band limits, got {values!r}")
    return values[0], values[1]


def _dated(values: Any, key: str) -> Dated:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"tariffs: {key}: expected a list of {{valid_from, value, source}}")
    entries = []
    for i, e in enumerate(values):
        if not isinstance(e, dict) or not e.get("source"):
            raise ConfigError(f"tariffs: {key}[{i}]: expected {{valid_from, value, source}}, got {e!r}")
        entries.append((_date(e.get("valid_from"), f"{key}[{i}].valid_from"), _dec(e.get("value"), f"{key}[{i}].value"),
                        str(e["source"])))
    return Dated(tuple(sorted(entries)))


def parse(raw: dict[str, Any]) -> Tariffs:
    """Build :class:`Tariffs` from the YAML mapping; a bad value raises ConfigError naming the key."""
    try:
        el, ht, wt = raw["electricity"], raw["heating"], raw["water"]
        tiers = tuple(sorted((ElectricityTier(
            valid_from=_date(t["valid_from"], f"electricity.tiers[{i}].valid_from"), source=str(t["source"]),
            summer_months=tuple(int(m) for m in t["summer_months"]),
            bands=_pair(t["bands"], f"electricity.tiers[{i}].bands"),
            summer_bands=_pair(t["summer_bands"], f"electricity.tiers[{i}].summer_bands"),
            base_krw=_triple(t["base_krw"], f"electricity.tiers[{i}].base_krw"),
            energy_krw_per_kwh=_triple(t["energy_krw_per_kwh"], f"electricity.tiers[{i}].energy_krw_per_kwh"))
            for i, t in enumerate(el["tiers"])), key=lambda t: t.valid_from))
        electricity = ElectricityTariff(
            tiers=tiers, climate=_dated(el["climate_krw_per_kwh"], "electricity.climate_krw_per_kwh"),
            fuel=_dated(el["fuel_adjustment_krw_per_kwh"], "electricity.fuel_adjustment_krw_per_kwh"),
            vat=_dated(el["vat_rate"], "electricity.vat_rate"),
            fund_levy=_dated(el["fund_levy_rate"], "electricity.fund_levy_rate"))
        heating = HeatingTariff(
            base_krw_per_m2=_dated([{"valid_from": t["valid_from"], "value": t["base_krw_per_m2"],
                                     "source": t["source"]} for t in ht["tariffs"]], "heating.tariffs"),
            energy_krw_per_mcal=_dated([{"valid_from": t["valid_from"], "value": t["energy_krw_per_mcal"],
                                         "source": t["source"]} for t in ht["tariffs"]], "heating.tariffs"),
            vat=_dated(ht["vat_rate"], "heating.vat_rate"),
            contract_area_m2=_dec(ht["contract_area_m2"], "heating.contract_area_m2"))
        water = WaterTariff(tuple(sorted((WaterTable(
            valid_from=_date(t["valid_from"], f"water.tariffs[{i}].valid_from"),
            bands=_pair(t["bands"], f"water.tariffs[{i}].bands"),
            water=_triple(t["water_krw_per_m3"], f"water.tariffs[{i}].water_krw_per_m3"),
            sewerage=_triple(t["sewerage_krw_per_m3"], f"water.tariffs[{i}].sewerage_krw_per_m3"),
            levy=_dec(t["levy_krw_per_m3"], f"water.tariffs[{i}].levy_krw_per_m3"))
            for i, t in enumerate(wt["tariffs"])), key=lambda t: t.valid_from)))
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"tariffs: missing or malformed key {exc}") from None
    return Tariffs(electricity, heating, water)


def load(path: Path | str | None = None) -> Tariffs:
    """Read and type-check ``config/tariffs.yaml`` (or ``path``)."""
    target = Path(path or DEFAULT_PATH)
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{target}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{target}: expected a mapping with electricity, heating, water")
    return parse(raw)
