"""The truth check: PostgreSQL's monthly totals against the simulator's ledger, to the last reading.

The ledger (written by the edge fleet, :mod:`apt_energy.edge.ledger`) holds what the broker
acknowledged, per household × meter × local month. ``energy_usage`` must hold exactly that: a total
that is short lost readings, one that is over (or a key the ledger does not know) doubled them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from apt_energy.config import Settings
from apt_energy.database import connect
from apt_energy.edge.ledger import Ledger

__all__ = ["Key", "Total", "TruthResult", "check", "database_totals", "read_ledger"]

Key = tuple[str, str, str]          # device id, meter, local month (ISO date of its first day)


class Total(NamedTuple):
    amount: Decimal
    readings: int


@dataclass(frozen=True)
class TruthResult:
    """How the database compares with the ledger."""

    ledger: dict[Key, Total]
    database: dict[Key, Total]

    @property
    def differ(self) -> dict[Key, tuple[Total, Total | None]]:
        """Ledger totals the database does not match: (ledger, database or None)."""
        return {k: (v, self.database.get(k)) for k, v in self.ledger.items() if self.database.get(k) != v}

    @property
    def unknown(self) -> dict[Key, Total]:
        """Database totals for keys the ledger does not have."""
        return {k: v for k, v in self.database.items() if k not in self.ledger}

    @property
    def readings(self) -> int:
        return sum(t.readings for t in self.ledger.values())

    @property
    def stored(self) -> int:
        return sum(t.readings for t in self.database.values())

    @property
    def lost(self) -> int:
        """Readings the broker acknowledged that never reached the database."""
        return sum(max(v.readings - (self.database[k].readings if k in self.database else 0), 0)
                   for k, v in self.ledger.items())

    @property
    def doubled(self) -> int:
        """Readings counted more often than they were published."""
        over = sum(max(self.database[k].readings - v.readings, 0) for k, v in self.ledger.items() if k in self.database)
        return over + sum(t.readings for t in self.unknown.values())

    @property
    def ok(self) -> bool:
        return not self.differ and not self.unknown


def read_ledger(path: Path) -> dict[Key, Total]:
    """The ledger file the fleet writes when it stops."""
    return {k: Total(amount, count) for k, (amount, count) in Ledger.read(path).items()}


def database_totals(settings: Settings, devices: Collection[str] | None = None) -> dict[Key, Total]:
    """``energy_usage`` as ledger keys, for ``devices`` only if given."""
    with connect(settings) as conn:
        rows = conn.execute(
            """SELECT h.device_id, et.key, u.usage_date, u.amount_exact, u.reading_count FROM energy_usage u
               JOIN households h ON h.id = u.household_id JOIN energy_types et ON et.label_ko = u.energy_type
               WHERE %(devices)s::text[] IS NULL OR h.device_id = ANY(%(devices)s)""",
            {"devices": list(devices) if devices is not None else None}).fetchall()
    return {(d, k, month.isoformat()): Total(Decimal(amount), int(n)) for d, k, month, amount, n in rows}


def check(settings: Settings, ledger: dict[Key, Total], *, only_ledger_devices: bool = False) -> TruthResult:
    """Compare; with ``only_ledger_devices`` other households' rows (another run's) are left out."""
    devices = {k[0] for k in ledger} if only_ledger_devices else None
    return TruthResult(ledger, database_totals(settings, devices))
