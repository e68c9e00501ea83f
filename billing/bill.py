"""A household-month's bill: its lines and total, exact (Decimal, KRW), and :func:`bill_for`, which
bills an energy type with the tariff kind ``config/tariffs.yaml`` assigns it.

How a bill is made up is the tariff *kind*'s (billing/progressive.py, area_heating.py, water_sewerage.py,
flat_rate.py; the registry is billing/kinds.py); which energy type uses which kind is data. Rounding
follows the statements: whole units where the supplier bills them, each charge line cut below 1 won, VAT
rounded to the won, the total cut below 10 won (10원 미만 절사). A month that spans a rate change pays the
day-weighted rate (일할 계산).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # tariffs.py imports the kinds, which build Bills: only a type here
    from apt_energy.billing.tariffs import Tariffs

logger = logging.getLogger(__name__)

# An energy key of config/complex.yaml's energy table (electricity, heating, water, gas, …).
EnergyType = str
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
    billed: Decimal         # what the tariff charges on (whole units where the kind bills whole units)
    tier: int | None        # the progressive kind's tier reached, else None
    lines: tuple[BillLine, ...]
    total: Decimal


def cut(amount: Decimal, unit: Decimal = WON) -> Decimal:
    """Truncate toward zero to a multiple of ``unit`` (절사)."""
    return (amount / unit).to_integral_value(rounding=ROUND_DOWN) * unit


def vat_line(charge: Decimal, rate: Decimal) -> BillLine:
    """VAT on ``charge``, rounded half up to the won (every VAT-liable kind's line)."""
    return BillLine("vat", "부가가치세", charge, rate, (charge * rate).quantize(WON, rounding=ROUND_HALF_UP))


def cut_total(raw: Decimal) -> tuple[Decimal, BillLine]:
    """The total cut below 10 won (10원 미만 절사), and the line that shows what the cut took."""
    total = cut(raw, TEN)
    return total, BillLine("truncation", "10원 미만 절사", Decimal(1), Decimal(0), total - raw)


def bill_for(tariffs: Tariffs, energy_type: EnergyType, month: date, usage: Decimal, *,
             contract_area_m2: Decimal | None = None) -> Bill:
    """The statement for one household-month of one energy type (``contract_area_m2``: the flat's unit
    type's, for a kind billed on area; the tariff file's default otherwise). An energy type without a
    tariff raises ConfigError (never another type's tariff); a month before its first rate raises
    NoTariffInForce."""
    return tariffs.bill(energy_type, month, usage, contract_area_m2=contract_area_m2)
