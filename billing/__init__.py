"""Household bills: dated tariffs from ``config/tariffs.yaml`` and exact statements per household-month."""

from __future__ import annotations

from apt_energy.billing.bill import (
    Bill,
    BillLine,
    bill_for,
    electricity_bill,
    electricity_tier,
    heating_bill,
    next_tier_limit,
    tier_limits,
    water_bill,
)
from apt_energy.billing.tariffs import Tariffs, load

__all__ = ["Bill", "BillLine", "Tariffs", "bill_for", "electricity_bill", "electricity_tier", "heating_bill",
           "load", "next_tier_limit", "tier_limits", "water_bill"]
