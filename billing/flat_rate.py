"""Tariff kind ``flat``: a monthly base charge + one rate per metered unit + VAT, the total cut below
10 won (city gas, and any energy type whose supplier bills that way)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apt_energy.billing import rates
from apt_energy.billing.bill import Bill, BillLine, cut, cut_total, vat_line
from apt_energy.billing.rates import Dated
from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)

KIND = "flat"


@dataclass(frozen=True)
class FlatTable:
    valid_from: date
    source: str
    base_krw: Decimal
    energy_krw_per_unit: Decimal


@dataclass(frozen=True)
class FlatTariff:
    tables: tuple[FlatTable, ...]
    vat: Dated
    key: str

    def table(self, month: date) -> FlatTable:
        return rates.in_force(self.tables, month, f"{self.key}.tariffs")

    def bill(self, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        return flat_bill(self, month, usage)


def flat_bill(tariff: FlatTariff, month: date, usage: Decimal) -> Bill:
    """Base charge + usage at one rate, VAT, 10-won cut."""
    table = tariff.table(month)
    energy = cut(usage * table.energy_krw_per_unit)
    vat = vat_line(table.base_krw + energy, tariff.vat.at(month))
    total, truncation = cut_total(table.base_krw + energy + vat.amount)
    lines = (BillLine("base", "기본요금", Decimal(1), table.base_krw, table.base_krw),
             BillLine("energy", "사용요금", usage, table.energy_krw_per_unit, energy),
             vat, truncation)
    return Bill(tariff.key, month, usage, usage, None, lines, total)


def parse(key: str, raw: Mapping[str, Any], *, contract: str) -> FlatTariff:
    """``key``'s section: dated ``tariffs`` (base_krw, energy_krw_per_unit) and vat_rate."""
    tables = tuple(sorted((FlatTable(
        valid_from=rates.day(t["valid_from"], f"{key}.tariffs[{i}].valid_from"), source=str(t["source"]),
        base_krw=rates.dec(t["base_krw"], f"{key}.tariffs[{i}].base_krw"),
        energy_krw_per_unit=rates.dec(t["energy_krw_per_unit"], f"{key}.tariffs[{i}].energy_krw_per_unit"))
        for i, t in enumerate(raw["tariffs"])), key=lambda t: t.valid_from))
    if not tables:
        raise ConfigError(f"tariffs: {key}.tariffs: expected at least one dated table")
    return FlatTariff(tables, rates.dated(raw["vat_rate"], f"{key}.vat_rate"), key)
