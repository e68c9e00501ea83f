"""The simulator's ground truth: what was actually published, per household, meter and local month.

Counted on PUBACK (the broker has the reading), in exact decimals, per device, meter, life and local
month (a device's seqs are unique within one life). Later stages are checked against it: ``energy_usage``
must equal it, summed over lives, to the last reading.

Written as it goes, so a kill -9 loses nothing already acknowledged: while a fleet runs the file is JSON
Lines, a header and then one line of *deltas* per flush (``flush``: the acknowledgements since the last
one, with the seqs they cover as ranges), appended and fsync'd in batches. A line is added only whole
(one ``write``); a half-written last line (the process died inside it) is ignored on reading, which is
safe because its acknowledgements are then unknown, and the fleet re-sends unknown readings with their
identity (see :mod:`apt_energy.edge.journal`). A clean stop rewrites the file atomically as one JSON
document (``write``), the form readers have always known; ``read`` and ``load`` accept both.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from apt_energy.core.contract import Reading, exact, usage_month

LEDGER_FORMAT = 2      # the JSON Lines header's "ledger" value

Identity = tuple[str, str, int]   # device, meter, life: seqs are unique within one


@dataclass
class Entry:
    total: Decimal = Decimal(0)
    count: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    seqs: list[list[int]] = field(default_factory=list)   # acknowledged seqs as sorted [first, last] ranges

    def add_seq(self, seq: int) -> None:
        self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
        self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        if self.seqs and self.seqs[-1][1] + 1 == seq:   # PUBACKs come in order: the common case is O(1)
            self.seqs[-1][1] = seq
        else:
            self.seqs.append([seq, seq])

    def merge(self, other: Entry) -> None:
        self.total += other.total
        self.count += other.count
        for seq in (other.first_seq, other.last_seq):
            if seq is not None:
                self.first_seq = seq if self.first_seq is None else min(self.first_seq, seq)
                self.last_seq = seq if self.last_seq is None else max(self.last_seq, seq)
        self.seqs = merge_ranges(self.seqs + other.seqs)


def merge_ranges(ranges: list[list[int]]) -> list[list[int]]:
    """Sorted, non-overlapping, non-adjacent ``[first, last]`` ranges covering the same seqs."""
    out: list[list[int]] = []
    for first, last in sorted(ranges):
        if out and first <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], last)
        else:
            out.append([first, last])
    return out


class Ledger:
    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._entries: dict[tuple[str, str, int, str], Entry] = defaultdict(Entry)
        self._delta: dict[tuple[str, str, int, str], Entry] = defaultdict(Entry)   # not yet in ``entries``
        self._months: dict[datetime, str] = {}   # a fleet's readings share a few interval ends
        self._file: IO[str] | None = None

    def record(self, reading: Reading) -> None:
        month = self._months.get(reading.ts)
        if month is None:
            if len(self._months) > 4096:
                self._months.clear()
            month = self._months[reading.ts] = usage_month(reading.ts, self.tz).isoformat()
        entry = self._delta[(reading.device_id, reading.meter, reading.life, month)]
        entry.total += exact(reading.value)
        entry.count += 1
        entry.add_seq(reading.seq)

    @property
    def entries(self) -> dict[tuple[str, str, int, str], Entry]:
        """Everything recorded or loaded, per device, meter, life and local month."""
        self._fold()
        return self._entries

    def _fold(self) -> dict[tuple[str, str, int, str], Entry]:
        delta, self._delta = self._delta, defaultdict(Entry)
        for key, entry in delta.items():
            self._entries[key].merge(entry)
        return delta

    # ------------------------------------------------------------------------ as it goes

    def open_append(self, path: Path) -> None:
        """Continue ``path`` as JSON Lines: rewritten atomically as a header and one line of what is known
        (this ledger, after ``load``), then appended to by ``flush``."""
        self._fold()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w") as f:
            f.write(json.dumps({"ledger": LEDGER_FORMAT, "timezone": str(self.tz)}) + "\n")
            if self.entries:
                f.write(json.dumps({"rows": _rows(self.entries)}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._file = path.open("a")

    def flush(self, *, sync: bool = False) -> None:
        """Append the acknowledgements recorded since the last flush as one line (one ``write``)."""
        delta = self._fold()
        if self._file is None:
            return
        if delta:
            self._file.write(json.dumps({"rows": _rows(delta)}) + "\n")
            self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------------- snapshots

    def to_json(self) -> dict[str, object]:
        self._fold()
        return {"timezone": str(self.tz), "rows": _rows(self.entries)}

    def write(self, path: Path) -> None:
        """Atomically: a reader never sees half a ledger."""
        doc = self.to_json()
        self.close()
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)

    def load(self, path: Path) -> None:
        """Continue a ledger written by an earlier run, whole or cut short (rows without ``life`` are
        life 0)."""
        for r in _read_rows(path):
            entry = Entry(Decimal(r["total"]), int(r["count"]), r.get("first_seq"), r.get("last_seq"),
                          [list(x) for x in r.get("seqs", [])])
            self._entries[(r["device_id"], r["meter"], int(r.get("life", 0)), r["month"])].merge(entry)

    def acknowledged(self) -> dict[Identity, list[list[int]]]:
        """The seqs the broker acknowledged, per device, meter and life (over every month)."""
        self._fold()
        out: dict[Identity, list[list[int]]] = defaultdict(list)
        for (device, meter, life, _), entry in self.entries.items():
            out[(device, meter, life)].extend(entry.seqs)
        return {k: merge_ranges(v) for k, v in out.items()}

    @staticmethod
    def read(path: Path) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
        """Totals and counts per (device, meter, month), summed over lives: what ``energy_usage`` holds."""
        out: dict[tuple[str, str, str], tuple[Decimal, int]] = {}
        for r in _read_rows(path):
            key = (r["device_id"], r["meter"], r["month"])
            total, count = out.get(key, (Decimal(0), 0))
            out[key] = (total + Decimal(r["total"]), count + int(r["count"]))
        return out


def _rows(entries: dict[tuple[str, str, int, str], Entry]) -> list[dict[str, Any]]:
    return [{"device_id": d, "meter": m, "life": life, "month": mo, "total": str(e.total), "count": e.count,
             "first_seq": e.first_seq, "last_seq": e.last_seq, "seqs": e.seqs}
            for (d, m, life, mo), e in sorted(entries.items())]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a ledger: one JSON document, or JSON Lines of deltas (a torn last line left out)."""
    text = path.read_text()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "rows" in doc:
        return list(doc["rows"])
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue   # only the last line can be torn: a kill -9 inside its write
        if isinstance(item, dict):
            rows.extend(item.get("rows", []))
    return rows
