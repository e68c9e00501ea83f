"""What one readings batch is to the sink and what its transaction did: the staged record, the merge's
counts (spark/merge_sql.py returns them), and the batch's result as the job logs it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import NamedTuple

from apt_energy.rules import MonthChange
from apt_energy.spark.poison import printable

__all__ = ["Applied", "BatchResult", "Continuity", "Counts", "MonthChange", "SetAside", "StagedReading",
           "StagingSummary"]


class StagedReading(NamedTuple):
    """One parsed Kafka record of the readings topic (``transforms.parse_readings`` plus ``life``)."""

    device_id: str | None
    meter: str | None
    life: int | None
    seq: int | None
    ts: str | None
    interval_s: int | None
    value: Decimal | None
    total: Decimal | None
    unit: str | None
    usage_month: date | None
    topic: str
    partition: int
    offset: int
    reason: str | None
    raw: str | None
    received_ms: int | None

    def quarantined(self, reason: str) -> StagedReading:
        """This record as a quarantine entry only: its Kafka coordinates, device and payload (made
        storable) and a reason — the validation's if it had one (the database then refused only the
        raw bytes), else ``reason``; nothing else of it reaches a table."""
        return StagedReading(printable(self.device_id), None, None, None, None, None, None, None, None, None,
                             self.topic,
                             self.partition, self.offset, self.reason or reason, printable(self.raw),
                             self.received_ms)


class Counts(NamedTuple):
    bad: int
    new: int


class SetAside(NamedTuple):
    """What the measurement identity set aside in one batch."""

    bad: int               # conflicts and overlaps (quarantined)
    new: int               # of which not quarantined before (a replay finds them there)
    duplicates: int        # repeats of a stored interval (not stored, not summed)
    new_duplicates: int    # of which counted now (a replay of the same records counts nothing)


class Continuity(NamedTuple):
    """Register pairs one batch flagged (spark/register.py)."""

    breaks: int     # backwards or a step that is not the interval's value
    gaps: int       # intervals missing in between (not an error)


class StagingSummary(NamedTuple):
    rows: int
    oldest_received_ms: int | None


class Applied(NamedTuple):
    """What one batch's transaction did."""

    rows: int
    changes: list[MonthChange]
    quarantined: int
    alerts: int
    resolved: int
    oldest_received_ms: int | None
    duplicates: int = 0    # readings of an interval already stored (same value and register)

    @property
    def inserted(self) -> int:
        return sum(c.inserted for c in self.changes)


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    rows: int
    inserted: int
    quarantined: int
    alerts: int
    resolved: int
    seconds: float
    lag_s: float | None
    duplicates: int = 0    # measurement duplicates (another seq or life, same interval, value and register)

    def line(self) -> str:
        lag = f"{self.lag_s:.2f}s" if self.lag_s is not None else "-"
        replays = self.rows - self.inserted - self.quarantined - self.duplicates
        return (f"batch={self.batch_id} rows={self.rows} inserted={self.inserted} duplicates={self.duplicates} "
                f"replays={replays} quarantined={self.quarantined} alerts={self.alerts} "
                f"resolved={self.resolved} duration={self.seconds:.2f}s lag={lag}")
