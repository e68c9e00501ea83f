"""The tariffs a complex is billed with, from ``config/tariffs.yaml``: one section per energy type of
the energy table, each naming its tariff kind (billing/kinds.py) and holding that kind's dated, sourced
rates. Loaded and checked at the application's door (:func:`for_energy_table`, called by billing/cli.py):
an energy type without a tariff, a tariff for an energy type the table does not have, or an unknown kind
stops there with one line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import yaml
from apt_energy.billing import kinds
from apt_energy.billing.bill import Bill
from apt_energy.billing.kinds import Tariff
from apt_energy.billing.rates import Dated, NoTariffInForce
from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PATH", "Dated", "NoTariffInForce", "Tariff", "Tariffs", "default_path", "for_energy_table",
           "load", "parse"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "config" / "tariffs.yaml"
CONTRACTS = ("comprehensive", "single")

_K = TypeVar("_K")


@dataclass(frozen=True)
class Tariffs:
    """Energy key → its tariff (of whichever kind its section names)."""

    by_energy: Mapping[str, Tariff]

    def __getitem__(self, key: str) -> Tariff:
        """``key``'s tariff; ConfigError naming the section to add when there is none (never another's)."""
        self.require([key])
        return self.by_energy[key]

    def of(self, key: str, kind: type[_K]) -> _K:
        """``key``'s tariff, which must be of the class ``kind`` (e.g. progressive.ProgressiveTariff)."""
        tariff = self[key]
        if not isinstance(tariff, kind):
            raise ConfigError(f"tariffs: {key}: billed as {type(tariff).__name__}, not {kind.__name__}")
        return tariff

    def keys_of(self, kind: type[Any]) -> tuple[str, ...]:
        """The energy types billed by tariffs of the class ``kind``, in the file's order."""
        return tuple(k for k, t in self.by_energy.items() if isinstance(t, kind))

    @property
    def energy_types(self) -> frozenset[str]:
        """The energy types these tariffs can bill."""
        return frozenset(self.by_energy)

    def bill(self, key: str, month: date, usage: Decimal, *, contract_area_m2: Decimal | None = None) -> Bill:
        """``key``'s household-month bill, by its tariff's kind."""
        return self[key].bill(month, usage, contract_area_m2=contract_area_m2)

    def require(self, energy_types: Iterable[str]) -> None:
        """Fail closed: stop with one line naming an energy type these tariffs cannot bill."""
        for key in energy_types:
            if key not in self.by_energy:
                raise ConfigError(f"tariffs: no tariff for energy type {key!r}: add a `{key}:` section with a "
                                  f"`kind:` ({', '.join(kinds.KINDS)}) and its dated, sourced rates to "
                                  "config/tariffs.yaml")

    def require_exactly(self, energy_types: Iterable[str]) -> None:
        """:meth:`require`, and no tariff for an energy type the table does not have (a typo, or a type
        removed from complex.yaml whose rates would never be used)."""
        wanted = list(energy_types)
        self.require(wanted)
        for key in self.by_energy:
            if key not in wanted:
                raise ConfigError(f"tariffs: {key}: a tariff for an energy type not in complex.yaml's energy "
                                  f"table ({', '.join(wanted)}): add it there or remove the section")


def parse(raw: Mapping[str, Any], *, contract: str = "comprehensive") -> Tariffs:
    """Build :class:`Tariffs` from the YAML mapping; a bad value raises ConfigError naming the key.
    ``contract`` is the complex's (billing.contract): the progressive kind picks its table by it."""
    if contract not in CONTRACTS:
        raise ConfigError(f"billing.contract: expected {' or '.join(CONTRACTS)}, got {contract!r}")
    try:
        return Tariffs({str(key): kinds.parse(str(key), section, contract=contract) for key, section in raw.items()})
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"tariffs: missing or malformed key {exc}") from None


def default_path() -> Path:
    """``tariffs.yaml`` in the config folder the settings are read from (``APT_ENERGY_CONFIG_DIR``)."""
    directory = os.environ.get("APT_ENERGY_CONFIG_DIR")
    return Path(directory) / "tariffs.yaml" if directory else DEFAULT_PATH


def load(path: Path | str | None = None, *, contract: str = "comprehensive",
         energy_types: Iterable[str] = ()) -> Tariffs:
    """Read and type-check ``config/tariffs.yaml`` (or ``path``) for a complex on ``contract``; stop if
    any of ``energy_types`` has no tariff."""
    target = Path(path or default_path())
    try:
        raw = yaml.safe_load(target.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{target}: cannot read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{target}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{target}: expected a mapping of energy types to their tariffs")
    tariffs = parse(raw, contract=contract)
    tariffs.require(energy_types)
    return tariffs


def for_energy_table(energy_types: Iterable[str], *, contract: str, path: Path | str | None = None) -> Tariffs:
    """The tariffs of exactly the energy table's types, for a complex on ``contract`` (the door's call:
    a missing or an extra section stops here, not when a bill is computed)."""
    wanted = list(energy_types)
    tariffs = load(path, contract=contract, energy_types=wanted)
    tariffs.require_exactly(wanted)
    return tariffs
