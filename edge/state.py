"""A gateway's state that survives a crash: a checkpoint file and a write-ahead journal beside it.

Real gateways keep running time: after a restart each device continues at the interval after the last one
it generated, with the next seq and its register, and re-sends what the broker had not acknowledged with
the *same* identity (device, meter, life, seq), so a restart neither skips an interval nor measures one
twice. Two files make that hold after a kill -9:

- the **checkpoint** (``state``, JSON, replaced atomically): every device's position in simulated time,
  its meters (life, seq, register, serial, since), its commands in force, and its unacknowledged readings;
- the **journal** (``state.journal``, JSON Lines): one line per fleet interval with the readings it
  generated, written (one ``write``) *before* any of them is handed to MQTT.

A checkpoint is taken every few seconds, on every command and at a stop: the ledger is flushed first (so an
acknowledgement it drops from the unacknowledged list is on disk), then the checkpoint, then the journal is
emptied. Loading replays the journal lines after the checkpoint's position; a torn last line (the process
died inside its write) is dropped, and none of its readings had been published. Readings the ledger
knows as acknowledged are not re-sent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from apt_energy.core.contract import Reading, format_ts, parse_ts

STATE_FORMAT = 3
# 3: {"format": 3, "devices": {id: {"life", "at", "interval_s", "offline_until", "accum", "accum_ticks",
#     "active": [...], "meters": {meter: {"seq", "total", "life", "serial", "since"}}, "pending": [rows]}}}
# 2: {"format": 2, "devices": {id: {"life": L, "meters": {meter: [seq, total_units]}}}}  (seq: a high-water mark)
# 1: {id: {meter: [seq, total_units]}}                                                    (life 0)


@dataclass
class Register:
    """A meter's persistent state: next sequence number and cumulative total in 10^-decimals units, and
    the physical meter it belongs to (``life``: Unix ms at its installation, None: the device's life)."""

    seq: int = 0
    total_units: int = 0
    life: int | None = None
    serial: str | None = None
    since: datetime | None = None     # simulated time the meter was installed (None: from the start)


@dataclass
class SavedDevice:
    """A device's persisted state: its life, its meters' registers and (format 3) where it stopped."""

    life: int
    registers: dict[str, Register]
    at: datetime | None = None                 # end of the last interval generated: it resumes after it
    interval_s: int | None = None
    offline_until: datetime | None = None
    accum: list[float] = field(default_factory=list)
    accum_ticks: int = 0
    active: list[dict[str, Any]] = field(default_factory=list)   # injected anomalies still in force
    pending: list[Reading] = field(default_factory=list)          # generated, not known as acknowledged


def reading_row(r: Reading) -> list[Any]:
    return [r.device_id, r.meter, r.life, r.seq, format_ts(r.ts), r.interval_s, r.value, r.total, r.unit]


def row_reading(row: list[Any]) -> Reading:
    device, meter, life, seq, ts, interval_s, value, total, unit = row
    return Reading(device, meter, int(seq), parse_ts(ts), int(interval_s), float(value), float(total), unit,
                   life=int(life))


def _ts(value: object) -> datetime | None:
    return parse_ts(value) if isinstance(value, str) else None


def _register(m: dict[str, Any]) -> Register:
    life = m.get("life")
    return Register(int(m["seq"]), int(m["total"]), None if life is None else int(life), m.get("serial"),
                    _ts(m.get("since")))


def _device(d: dict[str, Any]) -> SavedDevice:
    return SavedDevice(
        int(d["life"]), {meter: _register(m) for meter, m in d["meters"].items()}, at=_ts(d.get("at")),
        interval_s=d.get("interval_s"), offline_until=_ts(d.get("offline_until")),
        accum=[float(x) for x in d.get("accum", [])], accum_ticks=int(d.get("accum_ticks", 0)),
        active=list(d.get("active", [])), pending=[row_reading(r) for r in d.get("pending", [])])


def device_json(s: SavedDevice) -> dict[str, Any]:
    return {"life": s.life, "at": format_ts(s.at) if s.at else None, "interval_s": s.interval_s,
            "offline_until": format_ts(s.offline_until) if s.offline_until else None,
            "accum": s.accum, "accum_ticks": s.accum_ticks, "active": s.active,
            "meters": {m: {"seq": r.seq, "total": r.total_units, "life": r.life, "serial": r.serial,
                           "since": format_ts(r.since) if r.since else None} for m, r in s.registers.items()},
            "pending": [reading_row(r) for r in s.pending]}


def save_state(path: Path, devices: dict[str, SavedDevice]) -> None:
    """Atomically and durably (fsync before the rename): a reader sees the old checkpoint or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(json.dumps({"format": STATE_FORMAT, "devices": {k: device_json(v) for k, v in devices.items()}},
                           separators=(",", ":")))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def journal_path(state: Path) -> Path:
    return state.with_name(state.name + ".journal")


class Journal:
    """The write-ahead journal of generated readings (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("a")

    def append(self, end: datetime, readings: list[tuple[Reading, int]],
               accum: dict[str, tuple[int, list[float]]]) -> None:
        """One fleet interval: its readings (each with its register in units), and the devices still adding
        up a longer interval of their own. One ``write``, flushed to the OS: a kill -9 after it cannot lose
        it."""
        line: dict[str, Any] = {"t": format_ts(end), "r": [[*reading_row(r), units] for r, units in readings]}
        if accum:
            line["a"] = accum
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self._file.flush()

    def clear(self) -> None:
        """After a checkpoint: everything in the journal is in it."""
        self._file.truncate(0)
        self._file.seek(0)

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def replay(devices: dict[str, SavedDevice], path: Path) -> int:
    """Apply the journal's lines after each device's checkpointed position; returns readings restored."""
    if not path.exists():
        return 0
    restored = 0
    for line in path.read_text().splitlines():
        try:
            item = json.loads(line)
            end = parse_ts(item["t"])
            readings = [(row_reading(r[:9]), int(r[9])) for r in item["r"]]
        except (ValueError, KeyError, TypeError):
            continue   # a torn last line: written partly, so none of its readings was published
        for device in devices.values():
            if device.at is None or end > device.at:
                device.at = end
                device.accum, device.accum_ticks = [], 0
        for r, units in readings:
            saved = devices.get(r.device_id)
            reg = saved.registers.get(r.meter) if saved else None
            if saved is None or reg is None or (reg.life is not None and reg.life != r.life):
                continue
            if r.seq >= reg.seq:
                reg.seq, reg.total_units = r.seq + 1, units
                saved.pending.append(r)
                restored += 1
        for device_id, (ticks, values) in item.get("a", {}).items():
            if device_id in devices:
                devices[device_id].accum_ticks, devices[device_id].accum = int(ticks), [float(v) for v in values]
    return restored


def load_state(path: Path) -> dict[str, SavedDevice]:
    """Saved devices from ``path`` (its journal replayed) and from other shards' files beside it
    (``state-<i>-of-<n>.json``).

    When the shard split changes, a household's state is in another shard's file. Of format 3 files, the
    newest entry of a device (latest life, then furthest position, then most seqs) wins whole. Of older
    files, the latest life of every device and, within it, the highest saved seq of every meter keep
    (life, seq) unique, never reused. Files from before lives (``{id: {meter: [seq, total]}}``) are life
    0, the life their readings had."""
    files = {path, *path.parent.glob("state-*-of-*.json")} if path.name.startswith("state-") else {path}
    merged: dict[str, SavedDevice] = {}
    newest: dict[str, SavedDevice] = {}
    for file in sorted(f for f in files if f.exists()):
        data = json.loads(file.read_text())
        if data.get("format") == STATE_FORMAT:
            current = {dev: _device(d) for dev, d in data["devices"].items()}
            replay(current, journal_path(file))
            for dev, saved in current.items():
                if dev not in newest or _rank(saved) > _rank(newest[dev]):
                    newest[dev] = saved
            continue
        if data.get("format") == 2:
            devices = {dev: (int(d["life"]), d["meters"]) for dev, d in data["devices"].items()}
        else:
            devices = {dev: (0, meters) for dev, meters in data.items()}
        for dev, (life, meters) in devices.items():
            known = merged.get(dev)
            if known is None or life > known.life:
                known = merged[dev] = SavedDevice(life, {})
            elif life < known.life:
                continue  # an older generation's state: its seqs belong to a life that has ended
            for meter, (seq, total) in meters.items():
                reg = known.registers.get(meter)
                if reg is None or int(seq) > reg.seq:
                    known.registers[meter] = Register(seq=int(seq), total_units=int(total))
    for dev, saved in newest.items():
        if dev not in merged or saved.life >= merged[dev].life:
            merged[dev] = saved
    return merged


def _rank(s: SavedDevice) -> tuple[int, datetime, int]:
    return (max([s.life, *(r.life or 0 for r in s.registers.values())]), s.at or _EARLIEST,
            sum(r.seq for r in s.registers.values()))


_EARLIEST = datetime.min.replace(tzinfo=UTC)
