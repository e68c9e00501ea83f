"""Tariffs from ``config/tariffs.yaml``: dated rates with their sources, typed and frozen.

A rate is a list of ``(valid_from, value)`` entries; :func:`Dated.at` picks the one in force on a day,
and :func:`Dated.day_weighted` blends the rates over a month that spans a change (KEPCO prorates by days).
"""

from __future__ import annotations

import calendar
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from apt_energy.config import Settings

from apt_energy.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "tariffs.yaml"
# Which table electricity is billed on, by the complex's contract (settings.billing.contract).
TIER_TABLES = {"comprehensive": "tiers", "single": "high_voltage_tiers"}


class NoTariffInForce(ConfigError):
    """No rate of ``key`` is in force on ``day``: the tariff file starts later (a month to report, not to
    bill with some other rate)."""

    def __init__(self, message: str, *, key: str, day: date) -> None:
        super().__init__(message)
        self.key, self.day = key, day


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
            raise NoTariffInForce(f"tariffs: no rate in force on {day} (first valid_from {self.entries[0][0]})",
                                  key="rate", day=day)
        return value

    def day_weighted(self, month: date) -> Decimal:
        """Mean of the daily rates over the calendar month starting at ``month`` (exact Decimal)."""
        days = calendar.monthrange(month.year, month.month)[1]
        total = sum((self.at(month + timedelta(days=d)) for d in range(days)), Decimal(0))
        return total / days


@dataclass(frozen=True)
class SuperUser:
    """KEPCO's super-user rate (슈퍼유저 요금): the kWh above ``above_kwh`` in ``months`` at its own rate."""

    months: tuple[int, ...]
    above_kwh: int
    energy_krw_per_kwh: Decimal
    source: str


@dataclass(frozen=True)
class ElectricityTier:
    valid_from: date
    source: str
    summer_months: tuple[int, ...]
    bands: tuple[int, int]
    summer_bands: tuple[int, int]
    base_krw: tuple[Decimal, Decimal, Decimal]
    energy_krw_per_kwh: tuple[Decimal, Decimal, Decimal]
    super_user: SuperUser | None = None

    def bands_for(self, month: date) -> tuple[int, int]:
        return self.summer_bands if month.month in self.summer_months else self.bands

    def super_user_above(self, month: date) -> int | None:
        """The kWh above which the super-user rate applies in ``month`` (None: not that month)."""
        su = self.super_user
        return su.above_kwh if su is not None and month.month in su.months else None


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


@dataclass(frozen=True)
class FlatTable:
    valid_from: date
    source: str
    base_krw: Decimal
    energy_krw_per_unit: Decimal


@dataclass(frozen=True)
class FlatTariff:
    """``kind: flat``, any further energy type (city gas, …): a monthly base charge + one rate per metered
    unit + VAT, total cut below 10 won."""

    tables: tuple[FlatTable, ...]
    vat: Dated
    key: str

    def table(self, month: date) -> FlatTable:
        return _in_force(self.tables, month, f"{self.key}.tariffs")


class _Dated(Protocol):
    @property
    def valid_from(self) -> date: ...


_T = TypeVar("_T", bound=_Dated)


def _in_force(tables: tuple[_T, ...], day: date, key: str) -> _T:
    """The last of ``tables`` (sorted by ``valid_from``) in force on ``day``."""
    found = [t for t in tables if t.valid_from <= day]
    if not found:
        raise NoTariffInForce(f"tariffs: {key}: none in force on {day}", key=key, day=day)
    return found[-1]


@dataclass(frozen=True)
class Tariffs:
    electricity: ElectricityTariff
    heating: HeatingTariff
    water: WaterTariff
    flat: dict[str, FlatTariff] = field(default_factory=dict)   # further energy types, by key

    @property
    def energy_types(self) -> frozenset[str]:
        """The energy types these tariffs can bill."""
        return frozenset({"electricity", "heating", "water", *self.flat})

    def require(self, energy_types: Iterable[str]) -> None:
        """Fail closed: stop with one line naming an energy type these tariffs cannot bill."""
        for key in energy_types:
            if key not in self.energy_types:
                raise ConfigError(f"tariffs: no tariff for energy type {key!r}: add a `{key}:` section with "
                                  "`kind: flat` and its dated, sourced rates to config/tariffs.yaml")


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


def _months(values: Any, key: str) -> tuple[int, ...]:
    if not (isinstance(values, list) and values and all(isinstance(m, int) and 1 <= m <= 12 for m in values)):
        raise ConfigError(f"tariffs: {key}: expected a list of months 1-12, got {values!r}")
    return tuple(values)


def _super_user(raw: Any, key: str) -> SuperUser | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("source"):
        raise ConfigError(f"tariffs: {key}: expected {{months, above_kwh, energy_krw_per_kwh, source}}, got {raw!r}")
    above = raw.get("above_kwh")
    if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
        raise ConfigError(f"tariffs: {key}.above_kwh: expected a whole number of kWh > 0, got {above!r}")
    return SuperUser(_months(raw.get("months"), f"{key}.months"), above,
                     _dec(raw.get("energy_krw_per_kwh"), f"{key}.energy_krw_per_kwh"), str(raw["source"]))


def _tier_tables(raw: Any, key: str) -> tuple[ElectricityTier, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"tariffs: {key}: expected a list of dated tier tables")
    tables = []
    for i, t in enumerate(raw):
        k = f"{key}[{i}]"
        table = ElectricityTier(
            valid_from=_date(t["valid_from"], f"{k}.valid_from"), source=str(t["source"]),
            summer_months=_months(t["summer_months"], f"{k}.summer_months"),
            bands=_pair(t["bands"], f"{k}.bands"), summer_bands=_pair(t["summer_bands"], f"{k}.summer_bands"),
            base_krw=_triple(t["base_krw"], f"{k}.base_krw"),
            energy_krw_per_kwh=_triple(t["energy_krw_per_kwh"], f"{k}.energy_krw_per_kwh"),
            super_user=_super_user(t.get("super_user"), f"{k}.super_user"))
        su = table.super_user
        if su is not None and su.above_kwh <= max(table.bands[1], table.summer_bands[1]):
            raise ConfigError(f"tariffs: {k}.super_user.above_kwh: expected more than the tier-2 bands, "
                              f"got {su.above_kwh}")
        tables.append(table)
    return tuple(sorted(tables, key=lambda t: t.valid_from))


def _flat(key: str, raw: dict[str, Any]) -> FlatTariff:
    tables = tuple(sorted((FlatTable(
        valid_from=_date(t["valid_from"], f"{key}.tariffs[{i}].valid_from"), source=str(t["source"]),
        base_krw=_dec(t["base_krw"], f"{key}.tariffs[{i}].base_krw"),
        energy_krw_per_unit=_dec(t["energy_krw_per_unit"], f"{key}.tariffs[{i}].energy_krw_per_unit"))
        for i, t in enumerate(raw["tariffs"])), key=lambda t: t.valid_from))
    if not tables:
        raise ConfigError(f"tariffs: {key}.tariffs: expected at least one dated table")
    return FlatTariff(tables, _dated(raw["vat_rate"], f"{key}.vat_rate"), key)


def parse(raw: dict[str, Any], *, contract: str = "comprehensive") -> Tariffs:
    """Build :class:`Tariffs` from the YAML mapping; a bad value raises ConfigError naming the key.
    ``contract`` picks electricity's table: the low-voltage ``tiers`` or the ``high_voltage_tiers``."""
    if contract not in TIER_TABLES:
        raise ConfigError(f"billing.contract: expected {' or '.join(TIER_TABLES)}, got {contract!r}")
    table_key = TIER_TABLES[contract]
    try:
        el, ht, wt = raw["electricity"], raw["heating"], raw["water"]
        if table_key not in el:
            raise ConfigError(f"tariffs: electricity.{table_key}: missing; billing.contract {contract!r} bills on it")
        tiers = _tier_tables(el[table_key], f"electricity.{table_key}")
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
        flat = {}
        for key, section in raw.items():
            if key in ("electricity", "heating", "water"):
                continue
            if not isinstance(section, dict) or section.get("kind") != "flat":
                raise ConfigError(f"tariffs: {key}: expected `kind: flat` with tariffs and vat_rate (base charge + "
                                  "a rate per unit + VAT); electricity, heating and water have their own forms")
            flat[str(key)] = _flat(str(key), section)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"tariffs: missing or malformed key {exc}") from None
    return Tariffs(electricity, heating, water, flat)


def default_path() -> Path:
    """``tariffs.yaml`` in the config folder the settings are read from (``APT_ENERGY_CONFIG_DIR``)."""
    directory = os.environ.get("APT_ENERGY_CONFIG_DIR")
    return Path(directory) / "tariffs.yaml" if directory else DEFAULT_PATH


def load(path: Path | str | None = None, *, contract: str = "comprehensive",
         energy_types: Iterable[str] = ()) -> Tariffs:
    """Read and type-check ``config/tariffs.yaml`` (or ``path``) for a complex on ``contract``; stop if
    any of ``energy_types`` has no tariff."""
    target = Path(path or default_path())
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{target}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{target}: expected a mapping with electricity, heating, water")
    tariffs = parse(raw, contract=contract)
    tariffs.require(energy_types)
    return tariffs


def for_settings(settings: Settings) -> Tariffs:
    """The tariffs a complex is billed with: its config folder's file, its contract, all its energy types."""
    return load(contract=settings.billing.contract, energy_types=settings.energy)
