"""The message contract, defined once: what a device publishes and every later stage reads.

A reading is one meter's consumption over one interval. ``seq`` increases by one per meter and
survives device restarts, so (device_id, meter, seq) identifies a reading everywhere downstream and
makes at-least-once delivery exact. ``value`` and ``total`` are JSON numbers (MQTT Explorer plots
them) with at most :data:`MAX_DECIMALS` decimals, so sums in NUMERIC are exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from apt_energy.errors import InvalidInput

MAX_DECIMALS = 6
SCHEMA_VERSION = 1


def format_ts(ts: datetime) -> str:
    """UTC ISO-8601 with a ``Z``, second precision: ``2024-01-01T03:00:00Z``."""
    if ts.tzinfo is None:
        raise InvalidInput("timestamp without time zone")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: object, name: str = "ts") -> datetime:
    if not isinstance(text, str):
        raise InvalidInput(f"{name} is not a string")
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} is not ISO-8601: {text[:40]!r}") from None
    if ts.tzinfo is None:
        raise InvalidInput(f"{name} has no time zone")
    return ts.astimezone(UTC)


def usage_month(ts: datetime, tz: tzinfo) -> date:
    """The local month a reading counts in: the month of the last instant of its interval.

    ``ts`` is the interval's (exclusive) end, so a reading ending at local midnight on the 1st still
    belongs to the month before. Spark computes the same in ``spark/transforms.py``.
    """
    local = (ts - timedelta(seconds=1)).astimezone(tz)
    return date(local.year, local.month, 1)


def json_object(payload: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("not a JSON object")
    return data


def exact(value: float) -> Decimal:
    """The decimal a contract number stands for (its shortest repr, as JSON wrote it)."""
    return Decimal(repr(value))


@dataclass(frozen=True)
class Reading:
    """One meter's consumption over ``interval_s`` seconds ending at ``ts``."""

    device_id: str
    meter: str
    seq: int
    ts: datetime
    interval_s: int
    value: float
    total: float
    unit: str
    v: int = field(default=SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "device_id": self.device_id, "meter": self.meter, "seq": self.seq,
                "ts": format_ts(self.ts), "interval_s": self.interval_s, "value": self.value,
                "total": self.total, "unit": self.unit}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> Reading:
        """Parse and validate; raises :class:`InvalidInput` naming the first problem."""
        return cls.from_dict(json_object(payload))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reading:
        missing = [k for k in ("device_id", "meter", "seq", "ts", "interval_s", "value", "total", "unit")
                   if k not in data]
        if missing:
            raise InvalidInput(f"missing field {missing[0]}")
        for name in ("device_id", "meter", "unit"):
            if not isinstance(data[name], str) or not data[name]:
                raise InvalidInput(f"{name} is not a non-empty string")
        for name in ("seq", "interval_s"):
            if not isinstance(data[name], int) or isinstance(data[name], bool):
                raise InvalidInput(f"{name} is not an integer")
        if data["seq"] < 0:
            raise InvalidInput("seq is negative")
        if data["interval_s"] <= 0:
            raise InvalidInput("interval_s is not positive")
        for name in ("value", "total"):
            x = data[name]
            if not isinstance(x, int | float) or isinstance(x, bool):
                raise InvalidInput(f"{name} is not a number")
            if not math.isfinite(x):
                raise InvalidInput(f"{name} is not finite")
            if x < 0:
                raise InvalidInput(f"{name} is negative")
        return cls(device_id=data["device_id"], meter=data["meter"], seq=data["seq"], ts=parse_ts(data["ts"]),
                   interval_s=data["interval_s"], value=float(data["value"]), total=float(data["total"]),
                   unit=data["unit"], v=int(data.get("v", SCHEMA_VERSION)))


@dataclass(frozen=True)
class MeterInfo:
    meter: str
    unit: str


@dataclass(frozen=True)
class DeviceMeta:
    """Retained on ``.../meta``: who the device is and what it measures."""

    device_id: str
    complex_id: str
    building: int
    floor: int
    unit: int
    meters: tuple[MeterInfo, ...]
    firmware: str
    interval_s: int

    def to_json(self) -> bytes:
        return json.dumps({
            "device_id": self.device_id,
            "household": {"complex": self.complex_id, "building": self.building, "floor": self.floor,
                          "unit": self.unit},
            "meters": [{"meter": m.meter, "unit": m.unit} for m in self.meters],
            "firmware": self.firmware, "interval_s": self.interval_s,
        }, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class DeviceStatus:
    """Retained on ``.../status``: ``online`` on connect, ``offline`` as Last Will or on clean shutdown."""

    device_id: str
    state: str
    ts: datetime

    def to_json(self) -> bytes:
        return json.dumps({"device_id": self.device_id, "state": self.state, "ts": format_ts(self.ts)},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes | str) -> DeviceStatus:
        data = json_object(payload)
        if not isinstance(data.get("state"), str):
            raise InvalidInput("status without a state")
        return cls(str(data.get("device_id", "")), data["state"], parse_ts(data.get("ts")))
