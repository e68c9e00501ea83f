"""The simulator's ground truth: what was actually published, per household, meter and local month.

Counted on PUBACK (the broker has the reading), in exact decimals. Later stages are checked against
it: ``energy_usage`` must equal it to the last reading.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
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
        self.entries: dict[tuple[str, str, str], Entry] = defaultdict(Entry)

    def record(self, reading: Reading) -> None:
        key = (reading.device_id, reading.meter, usage_month(reading.ts, self.tz).isoformat())
        entry = self.entries[key]
        entry.total += exact(reading.value)
        entry.count += 1
        entry.first_seq = reading.seq if entry.first_seq is None else min(entry.first_seq, reading.seq)
        entry.last_seq = reading.seq if entry.last_seq is None else max(entry.last_seq, reading.seq)

    def to_json(self) -> dict[str, object]:
        rows = [{"device_id": d, "meter": m, "month": mo, "total": str(e.total), "count": e.count,
                 "first_seq": e.first_seq, "last_seq": e.last_seq}
                for (d, m, mo), e in sorted(self.entries.items())]
        return {"timezone": str(self.tz), "rows": rows}

    def write(self, path: Path) -> None:
        """Atomically: a reader never sees half a ledger."""
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)

    @staticmethod
    def read(path: Path) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
        data = json.loads(path.read_text())
        return {(r["device_id"], r["meter"], r["month"]): (Decimal(r["total"]), int(r["count"]))
                for r in data["rows"]}
