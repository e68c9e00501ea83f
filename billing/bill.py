"""Household bills per month, computed exactly (Decimal, KRW) from usage and :mod:`tariffs`.

Rounding follows the statements: KEPCO bills whole kWh, cuts each charge line below 1 won, rounds VAT
to the won, cuts the fund levy and the total below 10 won (10원 미만 절사). Water and heating bills cut
their total below 10 won. A month that spans a rate change pays the day-weighted rate (일할 계산).
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Literal

from apt_energy.billing.tariffs import (
    ElectricityTariff,
    FlatTariff,
    HeatingTariff,
    NoTariffInForce,
    Tariffs,
    WaterTariff,
)

from apt_energy.errors import ConfigError

logger = logging.getLogger(__name__)

# The three with a tariff form of their own; any other key is billed by a `kind: flat` tariff.
EnergyType = Literal["electricity", "heating", "water"] | str
WON = Decimal(1)
TEN = Decimal(10)


@dataclass(frozen=True)
class BillLine:
    """One line of a statement: what is charged, on which quantity, at which rate."""

    code: str
    label: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Bill:
    energy_type: EnergyType
    month: date
    usage: Decimal          # metered amount
    billed: Decimal         # what the tariff charges on (whole kWh for electricity)
    tier: int | None        # electricity's progressive tier reached, else None
    lines: tuple[BillLine, ...]
    total: Decimal


def cut(amount: Decimal, unit: Decimal = WON) -> Decimal:
    """Truncate toward zero to a multiple of ``unit`` (절사)."""
    return (amount / unit).to_integral_value(rounding=ROUND_DOWN) * unit


def _month_end(month: date) -> date:
    return month.replace(day=calendar.monthrange(month.year, month.month)[1])


def tier_of(kwh: Decimal, bands: tuple[int, int]) -> int:
    """Progressive tier (1-3) for a month's whole kWh under the month's bands."""
    return 1 if kwh <= bands[0] else 2 if kwh <= bands[1] else 3


def electricity_tier(tariff: ElectricityTariff, month: date, kwh: Decimal) -> int:
    """The tier a month's usage falls in (``kwh`` metered, cut to whole kWh as billed)."""
    table = tariff.tier_table(month)
    return tier_of(cut(kwh), table.bands_for(month))


def next_tier_limit(tariff: ElectricityTariff, month: date, kwh: Decimal) -> int | None:
    """The kWh above which the next tier starts (None in the top tier): the projection alert's line."""
    bands = tariff.tier_table(month).bands_for(month)
    tier = tier_of(cut(kwh), bands)
    return bands[tier - 1] if tier < 3 else None


def tier_limits(tariff: ElectricityTariff, months: Iterable[date]) -> dict[date, tuple[int, int]]:
    """Each month's tier bands (upper kWh of tiers 1 and 2) under the table in force; months before the
    first table are left out. Plain data for the projection rule, which may not read tariffs itself."""
    out = {}
    for month in months:
        try:
            out[month] = tariff.tier_table(month).bands_for(month)
        except NoTariffInForce:
            continue
    return out


def electricity_bill(tariff: ElectricityTariff, month: date, usage: Decimal) -> Bill:
    """KEPCO residential low-voltage statement for one household-month."""
    table = tariff.tier_table(month)
    kwh = cut(usage)
    b1, b2 = table.bands_for(month)
    # The super-user band takes the kWh above its line out of tier 3 (the base charge stays tier 3's).
    above = table.super_user_above(month)
    top = kwh if above is None else min(kwh, Decimal(above))
    quantities = (min(kwh, Decimal(b1)), max(min(kwh, Decimal(b2)) - b1, Decimal(0)), max(top - b2, Decimal(0)))
    tier = tier_of(kwh, (b1, b2))
    lines = [BillLine("base", f"기본요금 (누진 {tier}단계)", Decimal(1), table.base_krw[tier - 1],
                      table.base_krw[tier - 1])]
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
    vat_rate = tariff.vat.at(month)
    vat = (charge * vat_rate).quantize(WON, rounding=ROUND_HALF_UP)
    levy_rate = tariff.fund_levy.at(month)
    levy = cut(charge * levy_rate, TEN)
    lines.append(BillLine("vat", "부가가치세", charge, vat_rate, vat))
    lines.append(BillLine("fund_levy", "전력산업기반기금", charge, levy_rate, levy))
    total = cut(charge + vat + levy, TEN)
    lines.append(BillLine("truncation", "10원 미만 절사", Decimal(1), Decimal(0), total - (charge + vat + levy)))
    return Bill("electricity", month, usage, kwh, tier, tuple(lines), total)


def heating_bill(tariff: HeatingTariff, month: date, usage: Decimal, *,
                 contract_area_m2: Decimal | None = None) -> Bill:
    """District heating: base charge per m² of contract area + Mcal at the energy rate, VAT, 10-won cut."""
    area = tariff.contract_area_m2 if contract_area_m2 is None else contract_area_m2
    base_rate = tariff.base_krw_per_m2.day_weighted(month)
    rate = tariff.energy_krw_per_mcal.day_weighted(month)
    base = cut(area * base_rate)
    energy = cut(usage * rate)
    vat_rate = tariff.vat.at(month)
    vat = ((base + energy) * vat_rate).quantize(WON, rounding=ROUND_HALF_UP)
    raw = base + energy + vat
    total = cut(raw, TEN)
    lines = (BillLine("base", "기본요금 (계약면적)", area, base_rate, base),
             BillLine("energy", "사용요금", usage, rate, energy),
             BillLine("vat", "부가가치세", base + energy, vat_rate, vat),
             BillLine("truncation", "10원 미만 절사", Decimal(1), Decimal(0), total - raw))
    return Bill("heating", month, usage, usage, None, lines, total)


def water_bill(tariff: WaterTariff, month: date, usage: Decimal) -> Bill:
    """Water + sewerage by tier + water-use levy on whole m³ (VAT-exempt), 10-won cut."""
    table = tariff.table(month)
    m3 = cut(usage)
    b1, b2 = table.bands
    quantities = (min(m3, Decimal(b1)), max(min(m3, Decimal(b2)) - b1, Decimal(0)), max(m3 - b2, Decimal(0)))
    lines = []
    for name, label, rates in (("water", "상수도", table.water), ("sewerage", "하수도", table.sewerage)):
        for i, (q, rate) in enumerate(zip(quantities, rates, strict=True)):
            if q > 0:
                lines.append(BillLine(f"{name}_t{i + 1}", f"{label} {i + 1}단계", q, rate, cut(q * rate)))
    lines.append(BillLine("levy", "물이용부담금", m3, table.levy, cut(m3 * table.levy)))
    raw = sum((line.amount for line in lines), Decimal(0))
    total = cut(raw, TEN)
    lines.append(BillLine("truncation", "10원 미만 절사", Decimal(1), Decimal(0), total - raw))
    return Bill("water", month, usage, m3, None, tuple(lines), total)


def flat_bill(tariff: FlatTariff, month: date, usage: Decimal) -> Bill:
    """``kind: flat``: base charge + usage at one rate, VAT, 10-won cut."""
    table = tariff.table(month)
    energy = cut(usage * table.energy_krw_per_unit)
    vat_rate = tariff.vat.at(month)
    vat = ((table.base_krw + energy) * vat_rate).quantize(WON, rounding=ROUND_HALF_UP)
    raw = table.base_krw + energy + vat
    total = cut(raw, TEN)
    lines = (BillLine("base", "기본요금", Decimal(1), table.base_krw, table.base_krw),
             BillLine("energy", "사용요금", usage, table.energy_krw_per_unit, energy),
             BillLine("vat", "부가가치세", table.base_krw + energy, vat_rate, vat),
             BillLine("truncation", "10원 미만 절사", Decimal(1), Decimal(0), total - raw))
    return Bill(tariff.key, month, usage, usage, None, lines, total)


def bill_for(tariffs: Tariffs, energy_type: EnergyType, month: date, usage: Decimal, *,
             contract_area_m2: Decimal | None = None) -> Bill:
    """The statement for one household-month of one energy type (``contract_area_m2``: the flat's unit
    type's, for heating; the tariff file's default otherwise). An energy type without a tariff raises
    ConfigError (never another type's tariff); a month before its first rate raises NoTariffInForce."""
    if energy_type == "electricity":
        return electricity_bill(tariffs.electricity, month, usage)
    if energy_type == "heating":
        return heating_bill(tariffs.heating, month, usage, contract_area_m2=contract_area_m2)
    if energy_type == "water":
        return water_bill(tariffs.water, month, usage)
    if energy_type in tariffs.flat:
        return flat_bill(tariffs.flat[energy_type], month, usage)
    tariffs.require([energy_type])   # raises, naming the section to add
    raise ConfigError(f"tariffs: no tariff for energy type {energy_type!r}")
