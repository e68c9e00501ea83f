"""The tariff kinds: how a bill is made up is code (one module per kind), which energy type is billed
by which kind is data (``kind:`` in each section of ``config/tariffs.yaml``).

Adding an energy type whose supplier bills like an existing kind takes no code: its energy-table entry
in complex.yaml and a tariff section naming the kind. A new way of billing is one new module with a
``parse`` and a tariff that has ``bill``, listed here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from apt_energy.billing import area_heating, flat_rate, progressive, water_sewerage
from apt_energy.billing.bill import Bill
from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)


class Tariff(Protocol):
    """One energy type's parsed tariff, of some kind."""

    @property
    def key(self) -> str:
        """The energy type it bills."""
        ...

    def bill(self, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        """The household-month's statement (``contract_area_m2``: only kinds billed on area read it)."""
        ...


# A kind's parser: (energy key, its YAML section, the complex's billing contract) → its tariff.
Parser = Callable[..., Tariff]

KINDS: Mapping[str, Parser] = {
    progressive.KIND: progressive.parse,
    area_heating.KIND: area_heating.parse,
    water_sewerage.KIND: water_sewerage.parse,
    flat_rate.KIND: flat_rate.parse,
}


def parse(key: str, section: Any, *, contract: str) -> Tariff:
    """``key``'s tariff by the kind its section names; ConfigError naming the key otherwise."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"tariffs: {key}: expected a mapping with `kind:` ({', '.join(KINDS)}) and its rates")
    kind = section.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise ConfigError(f"tariffs: {key}.kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    return KINDS[kind](key, section, contract=contract)
