"""Tariff kind ``area_heating``: district heating (KDHC), a base charge per m² of the flat's contract
area + the metered units at the energy rate, VAT, the total cut below 10 won.

The area is the flat's unit type's (config/complex.yaml ``complex.unit_types``), else the tariff
section's ``contract_area_m2``.
"""

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

logger = logging.getLogger(__name__)

KIND = "area_heating"


@dataclass(frozen=True)
class AreaTariff:
    base_krw_per_m2: Dated
    energy_krw_per_mcal: Dated
    vat: Dated
    contract_area_m2: Decimal
    key: str = ""           # the energy type billed on it

    def bill(self, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        return area_heating_bill(self, month, usage, contract_area_m2=contract_area_m2)


def area_heating_bill(tariff: AreaTariff, month: date, usage: Decimal, *,
                      contract_area_m2: Decimal | None = None) -> Bill:
    """Base charge per m² of contract area + units at the energy rate, VAT, 10-won cut."""
    area = tariff.contract_area_m2 if contract_area_m2 is None else contract_area_m2
    base_rate = tariff.base_krw_per_m2.day_weighted(month)
    rate = tariff.energy_krw_per_mcal.day_weighted(month)
    base = cut(area * base_rate)
    energy = cut(usage * rate)
    vat = vat_line(base + energy, tariff.vat.at(month))
    total, truncation = cut_total(base + energy + vat.amount)
    lines = (BillLine("base", "기본요금 (계약면적)", area, base_rate, base),
             BillLine("energy", "사용요금", usage, rate, energy),
             vat, truncation)
    return Bill(tariff.key, month, usage, usage, None, lines, total)


def parse(key: str, raw: Mapping[str, Any], *, contract: str) -> AreaTariff:
    """``key``'s section: dated ``tariffs`` (base_krw_per_m2, energy_krw_per_mcal), vat_rate, contract_area_m2."""
    tables = rates.tables(raw, key)
    return AreaTariff(
        base_krw_per_m2=rates.dated([{"valid_from": t["valid_from"], "value": t["base_krw_per_m2"],
                                      "source": t["source"]} for t in tables], f"{key}.tariffs"),
        energy_krw_per_mcal=rates.dated([{"valid_from": t["valid_from"], "value": t["energy_krw_per_mcal"],
                                          "source": t["source"]} for t in tables], f"{key}.tariffs"),
        vat=rates.dated(raw["vat_rate"], f"{key}.vat_rate"),
        contract_area_m2=rates.dec(raw["contract_area_m2"], f"{key}.contract_area_m2"), key=key)
