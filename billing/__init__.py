"""Household bills: dated tariffs from ``config/tariffs.yaml``, each energy type billed by the tariff kind
its section names (billing/kinds.py), and exact statements per household-month."""

from __future__ import annotations

from apt_energy.billing.area_heating import AreaTariff, area_heating_bill
from apt_energy.billing.bill import Bill, BillLine, bill_for
from apt_energy.billing.flat_rate import FlatTariff, flat_bill
from apt_energy.billing.kinds import KINDS, Tariff
from apt_energy.billing.progressive import ProgressiveTariff, next_tier_limit, progressive_bill, tier, tier_limits
from apt_energy.billing.tariffs import NoTariffInForce, Tariffs, for_energy_table, load
from apt_energy.billing.water_sewerage import WaterSewerageTariff, water_sewerage_bill

__all__ = [
    "KINDS",
    "AreaTariff",
    "Bill",
    "BillLine",
    "FlatTariff",
    "NoTariffInForce",
    "ProgressiveTariff",
    "Tariff",
    "Tariffs",
    "WaterSewerageTariff",
    "area_heating_bill",
    "bill_for",
    "flat_bill",
    "for_energy_table",
    "load",
    "next_tier_limit",
    "progressive_bill",
    "tier",
    "tier_limits",
    "water_sewerage_bill",
]
