"""Tariff kind ``water_sewerage``: a city's tabled water supply and sewerage rates by tier, plus the
water-use levy, on whole units; VAT-exempt; the total cut below 10 won.

The line codes (``water_t1``, ``sewerage_t2``, ``levy``) name the kind's charges, not an energy type:
they are what bill_lines stores and the statement translates.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apt_energy.billing import rates
from apt_energy.billing.bill import Bill, BillLine, cut, cut_total

logger = logging.getLogger(__name__)

KIND = "water_sewerage"


@dataclass(frozen=True)
class WaterSewerageTable:
    valid_from: date
    bands: tuple[int, int]
    water: tuple[Decimal, Decimal, Decimal]
    sewerage: tuple[Decimal, Decimal, Decimal]
    levy: Decimal


@dataclass(frozen=True)
class WaterSewerageTariff:
    tables: tuple[WaterSewerageTable, ...]
    key: str = ""           # the energy type billed on it

    def table(self, month: date) -> WaterSewerageTable:
        """The table in force on the month's first day."""
        return rates.in_force(self.tables, month, f"{self.key}.tariffs")

    def bill(self, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        return water_sewerage_bill(self, month, usage)


def water_sewerage_bill(tariff: WaterSewerageTariff, month: date, usage: Decimal) -> Bill:
    """Water + sewerage by tier + water-use levy on whole units (VAT-exempt), 10-won cut."""
    table = tariff.table(month)
    units = cut(usage)
    b1, b2 = table.bands
    quantities = (min(units, Decimal(b1)), max(min(units, Decimal(b2)) - b1, Decimal(0)),
                  max(units - b2, Decimal(0)))
    lines = []
    # the kind's two tiered charges: (line code prefix, Korean label, rates per tier)
    for code, label, tiers in (("water", "상수도", table.water), ("sewerage", "하수도", table.sewerage)):
        for i, (q, rate) in enumerate(zip(quantities, tiers, strict=True)):
            if q > 0:
                lines.append(BillLine(f"{code}_t{i + 1}", f"{label} {i + 1}단계", q, rate, cut(q * rate)))
    lines.append(BillLine("levy", "물이용부담금", units, table.levy, cut(units * table.levy)))
    raw = sum((line.amount for line in lines), Decimal(0))
    total, truncation = cut_total(raw)
    lines.append(truncation)
    return Bill(tariff.key, month, usage, units, None, tuple(lines), total)


def parse(key: str, raw: Mapping[str, Any], *, contract: str) -> WaterSewerageTariff:
    """``key``'s section: dated ``tariffs`` with bands, water/sewerage rates per tier and the levy."""
    k = f"{key}.tariffs"
    return WaterSewerageTariff(tuple(sorted((WaterSewerageTable(
        valid_from=rates.day(t["valid_from"], f"{k}[{i}].valid_from"),
        bands=rates.pair(t["bands"], f"{k}[{i}].bands"),
        water=rates.triple(t["water_krw_per_m3"], f"{k}[{i}].water_krw_per_m3"),
        sewerage=rates.triple(t["sewerage_krw_per_m3"], f"{k}[{i}].sewerage_krw_per_m3"),
        levy=rates.dec(t["levy_krw_per_m3"], f"{k}[{i}].levy_krw_per_m3"))
        for i, t in enumerate(rates.tables(raw, key))), key=lambda t: t.valid_from)), key=key)
