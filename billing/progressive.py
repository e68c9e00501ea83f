"""Tariff kind ``progressive``: KEPCO's residential progressive tiers (누진제), as electricity is billed.

Each band's units at its own rate; the base charge is the one of the highest tier reached; summer months
have their own bands; a super-user band (슈퍼유저 요금) takes the units above its line in its months; then
the climate-environment and fuel-cost charges per unit, VAT and the power-industry fund levy. The
complex's contract (``billing.contract``) picks the low- or high-voltage table. The projection rule's
tier warning is about this kind (:func:`tier_limits`), whichever energy type uses it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apt_energy.billing import rates
from apt_energy.billing.bill import TEN, Bill, BillLine, cut, cut_total, vat_line
from apt_energy.billing.rates import Dated, NoTariffInForce
from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)

KIND = "progressive"
# Which table a complex is billed on, by its contract (settings.billing.contract).
TIER_TABLES = {"comprehensive": "tiers", "single": "high_voltage_tiers"}


@dataclass(frozen=True)
class SuperUser:
    """KEPCO's super-user rate (슈퍼유저 요금): the units above ``above_kwh`` in ``months`` at their own rate."""

    months: tuple[int, ...]
    above_kwh: int
    energy_krw_per_kwh: Decimal
    source: str


@dataclass(frozen=True)
class TierTable:
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
        """The units above which the super-user rate applies in ``month`` (None: not that month)."""
        su = self.super_user
        return su.above_kwh if su is not None and month.month in su.months else None


@dataclass(frozen=True)
class ProgressiveTariff:
    tiers: tuple[TierTable, ...]
    climate: Dated
    fuel: Dated
    vat: Dated
    fund_levy: Dated
    key: str = ""           # the energy type billed on it

    def tier_table(self, month: date) -> TierTable:
        """The tier table in force on the month's first day."""
        return rates.in_force(self.tiers, month, f"{self.key}.tiers")

    def bill(self, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        return progressive_bill(self, month, usage)


def tier_of(kwh: Decimal, bands: tuple[int, int]) -> int:
    """Progressive tier (1-3) for a month's whole units under the month's bands."""
    return 1 if kwh <= bands[0] else 2 if kwh <= bands[1] else 3


def tier(tariff: ProgressiveTariff, month: date, kwh: Decimal) -> int:
    """The tier a month's usage falls in (``kwh`` metered, cut to whole units as billed)."""
    table = tariff.tier_table(month)
    return tier_of(cut(kwh), table.bands_for(month))


def next_tier_limit(tariff: ProgressiveTariff, month: date, kwh: Decimal) -> int | None:
    """The units above which the next tier starts (None in the top tier): the projection alert's line."""
    bands = tariff.tier_table(month).bands_for(month)
    reached = tier_of(cut(kwh), bands)
    return bands[reached - 1] if reached < 3 else None


def tier_limits(tariff: ProgressiveTariff, months: Iterable[date]) -> dict[date, tuple[int, int]]:
    """Each month's tier bands (upper units of tiers 1 and 2) under the table in force; months before the
    first table are left out. Plain data for the projection rule, which may not read tariffs itself."""
    out = {}
    for month in months:
        try:
            out[month] = tariff.tier_table(month).bands_for(month)
        except NoTariffInForce:
            continue
    return out


def progressive_bill(tariff: ProgressiveTariff, month: date, usage: Decimal) -> Bill:
    """KEPCO residential statement for one household-month."""
    table = tariff.tier_table(month)
    kwh = cut(usage)
    b1, b2 = table.bands_for(month)
    # The super-user band takes the units above its line out of tier 3 (the base charge stays tier 3's).
    above = table.super_user_above(month)
    top = kwh if above is None else min(kwh, Decimal(above))
    quantities = (min(kwh, Decimal(b1)), max(min(kwh, Decimal(b2)) - b1, Decimal(0)), max(top - b2, Decimal(0)))
    reached = tier_of(kwh, (b1, b2))
    lines = [BillLine("base", f"기본요금 (누진 {reached}단계)", Decimal(1), table.base_krw[reached - 1],
                      table.base_krw[reached - 1])]
    for i, (q, rate) in enumerate(zip(quantities, table.energy_krw_per_kwh, strict=True)):
        if q > 0:
            lines.append(BillLine(f"energy_t{i + 1}", f"전력량요금 {i + 1}단계", q, rate, cut(q * rate)))
    if above is not None and kwh > above and table.super_user is not None:
        q, rate = kwh - above, table.super_user.energy_krw_per_kwh
        lines.append(BillLine("energy_super", "슈퍼유저요금", q, rate, cut(q * rate)))
    climate = tariff.climate.day_weighted(month)
    fuel = tariff.fuel.day_weighted(month)
    lines.append(BillLine("climate", "기후환경요금", kwh, climate, cut(kwh * climate)))
    lines.append(BillLine("fuel", "연료비조정요금", kwh, fuel, cut(kwh * fuel)))
    charge = sum((line.amount for line in lines), Decimal(0))
    lines.append(BillLine("charge", "전기요금계", Decimal(1), charge, charge))
    vat = vat_line(charge, tariff.vat.at(month))
    levy_rate = tariff.fund_levy.at(month)
    levy = cut(charge * levy_rate, TEN)
    lines.append(vat)
    lines.append(BillLine("fund_levy", "전력산업기반기금", charge, levy_rate, levy))
    total, truncation = cut_total(charge + vat.amount + levy)
    lines.append(truncation)
    return Bill(tariff.key, month, usage, kwh, reached, tuple(lines), total)


def _super_user(raw: Any, key: str) -> SuperUser | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw.get("source"):
        raise ConfigError(f"tariffs: {key}: expected {{months, above_kwh, energy_krw_per_kwh, source}}, got {raw!r}")
    above = raw.get("above_kwh")
    if isinstance(above, bool) or not isinstance(above, int) or above <= 0:
        raise ConfigError(f"tariffs: {key}.above_kwh: expected a whole number of kWh > 0, got {above!r}")
    return SuperUser(rates.months(raw.get("months"), f"{key}.months"), above,
                     rates.dec(raw.get("energy_krw_per_kwh"), f"{key}.energy_krw_per_kwh"), str(raw["source"]))


def _tier_tables(raw: Any, key: str) -> tuple[TierTable, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"tariffs: {key}: expected a list of dated tier tables")
    tables = []
    for i, t in enumerate(raw):
        k = f"{key}[{i}]"
        table = TierTable(
            valid_from=rates.day(t["valid_from"], f"{k}.valid_from"), source=str(t["source"]),
            summer_months=rates.months(t["summer_months"], f"{k}.summer_months"),
            bands=rates.pair(t["bands"], f"{k}.bands"), summer_bands=rates.pair(t["summer_bands"], f"{k}.summer_bands"),
            base_krw=rates.triple(t["base_krw"], f"{k}.base_krw"),
            energy_krw_per_kwh=rates.triple(t["energy_krw_per_kwh"], f"{k}.energy_krw_per_kwh"),
            super_user=_super_user(t.get("super_user"), f"{k}.super_user"))
        su = table.super_user
        if su is not None and su.above_kwh <= max(table.bands[1], table.summer_bands[1]):
            raise ConfigError(f"tariffs: {k}.super_user.above_kwh: expected more than the tier-2 bands, "
                              f"got {su.above_kwh}")
        tables.append(table)
    return tuple(sorted(tables, key=lambda t: t.valid_from))


def parse(key: str, raw: Mapping[str, Any], *, contract: str) -> ProgressiveTariff:
    """``key``'s section of the tariff file; ``contract`` picks the ``tiers`` or ``high_voltage_tiers``."""
    if contract not in TIER_TABLES:
        raise ConfigError(f"billing.contract: expected {' or '.join(TIER_TABLES)}, got {contract!r}")
    table_key = TIER_TABLES[contract]
    if table_key not in raw:
        raise ConfigError(f"tariffs: {key}.{table_key}: missing; billing.contract {contract!r} bills on it")
    return ProgressiveTariff(
        tiers=_tier_tables(raw[table_key], f"{key}.{table_key}"),
        climate=rates.dated(raw["climate_krw_per_kwh"], f"{key}.climate_krw_per_kwh"),
        fuel=rates.dated(raw["fuel_adjustment_krw_per_kwh"], f"{key}.fuel_adjustment_krw_per_kwh"),
        vat=rates.dated(raw["vat_rate"], f"{key}.vat_rate"),
        fund_levy=rates.dated(raw["fund_levy_rate"], f"{key}.fund_levy_rate"), key=key)
