"""The simulator's ground truth: what was actually published, per household, meter and local month.

Counted on PUBACK (the broker has the reading), in exact decimals, per device, meter, life and local
month (a device's seqs are unique within one life). Later stages are checked against it: ``energy_usage``
must equal it, summed over lives, to the last reading.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from apt_energy.contract import Reading, exact, usage_month


@dataclass
class Entry:
    total: Decimal = Decimal(0)
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None


class Ledger:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self.entries: dict[tuple[str, str, int, str], Entry] = defaultdict(Entry)
        self._months: dict[datetime, str] = {}   # a fleet's readings share a few interval ends

    def record(self, reading: Reading) -> None:
        month = self._months.get(reading.ts)
        if month is None:
            if len(self._months) > 4096:
                self._months.clear()
            month = self._months[reading.ts] = usage_month(reading.ts, self.tz).isoformat()
        key = (reading.device_id, reading.meter, reading.life, month)
        entry = self.entries[key]
        entry.total += exact(reading.value)
        entry.count += 1
        entry.first_seq = reading.seq if entry.first_seq is None else min(entry.first_seq, reading.seq)
        entry.last_seq = reading.seq if entry.last_seq is None else max(entry.last_seq, reading.seq)

    def to_json(self) -> dict[str, object]:
        rows = [{"device_id": d, "meter": m, "life": life, "month": mo, "total": str(e.total), "count": e.count,
                 "first_seq": e.first_seq, "last_seq": e.last_seq}
                for (d, m, life, mo), e in sorted(self.entries.items())]
        return {"timezone": str(self.tz), "rows": rows}

    def write(self, path: Path) -> None:
        """Atomically: a reader never sees half a ledger."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        """Continue a ledger written by an earlier run (rows without ``life`` are life 0)."""
        for r in json.loads(path.read_text())["rows"]:
            entry = self.entries[(r["device_id"], r["meter"], int(r.get("life", 0)), r["month"])]
            entry.total, entry.count = Decimal(r["total"]), int(r["count"])
            entry.first_seq, entry.last_seq = r.get("first_seq"), r.get("last_seq")

    @staticmethod
    def read(path: Path) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
        """Totals and counts per (device, meter, month), summed over lives: what ``energy_usage`` holds."""
        out: dict[tuple[str, str, str], tuple[Decimal, int]] = {}
        for r in json.loads(path.read_text())["rows"]:
            key = (r["device_id"], r["meter"], r["month"])
            total, count = out.get(key, (Decimal(0), 0))
            out[key] = (total + Decimal(r["total"]), count + int(r["count"]))
        return out
