"""Household bills: dated tariffs from ``config/tariffs.yaml`` and exact statements per household-month."""

from __future__ import annotations

from apt_energy.billing.bill import (
    Bill,
    BillLine,
    bill_for,
    electricity_bill,
    electricity_tier,
    flat_bill,
    heating_bill,
    next_tier_limit,
    tier_limits,
    water_bill,
)
from apt_energy.billing.tariffs import NoTariffInForce, Tariffs, for_settings, load

__all__ = [
    "Bill",
    "BillLine",
    "NoTariffInForce",
    "Tariffs",
    "bill_for",
    "electricity_bill",
    "electricity_tier",
    "flat_bill",
    "for_settings",
    "heating_bill",
    "load",
    "next_tier_limit",
    "tier_limits",
    "water_bill",
]
