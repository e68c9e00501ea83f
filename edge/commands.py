"""Commands a device accepts on its ``.../cmd`` topic, parsed and validated as pure functions.

    {"inject": "leak", "meter": "water", "hours": 48}             steady flow day and night
    {"inject": "overuse", "meter": "electricity", "factor": 2, "hours": 72}
    {"clear": "anomalies"}
    {"set": "interval", "interval_s": 7200}                      a multiple of the fleet interval
    {"offline": {"hours": 6}}                                    drop the connection, buffer, come back
    {"replace": "water", "serial": "W-123", "total": 0.5}          a new meter (serial, start register optional)

Anything else raises :class:`InvalidInput`, for any bytes whatever (a 3,000-deep array, NaN, non-UTF-8,
megabytes): the device it was sent to logs and counts it and keeps running, and so does every other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from apt_energy.core.contract import ContractError, load_json
from apt_energy.core.errors import InvalidInput

MAX_COMMAND_BYTES = 4096


@dataclass(frozen=True)
class Inject:
    kind: str          # leak | overuse
    meter: str
    hours: float
    factor: float = 1.0    # overuse multiplier
    flow: float = 0.0      # leak flow per hour, in the meter's unit


@dataclass(frozen=True)
class ClearAnomalies:
    pass


@dataclass(frozen=True)
class SetInterval:
    interval_s: int


@dataclass(frozen=True)
class GoOffline:
    hours: float


@dataclass(frozen=True)
class ReplaceMeter:
    meter: str
    serial: str | None = None
    total: float | None = None     # the new meter's start register, in the meter's unit (None: a small one)


Command = Inject | ClearAnomalies | SetInterval | GoOffline | ReplaceMeter

MAX_SERIAL = 64


def _number(data: dict[str, Any], key: str, *, default: float | None = None, low: float = 0.0,
            high: float = math.inf) -> float:
    value = data.get(key, default)
    if value is None:
        raise InvalidInput(f"missing {key}")
    # an int is compared as it is: math.isfinite(10**400) would raise OverflowError
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)):
        raise InvalidInput(f"{key} is not a number")
    if not low < value <= high:
        raise InvalidInput(f"{key} must be in ({low:g}, {high:g}]")
    return float(value)


def parse_command(payload: bytes, *, meters: tuple[str, ...], base_interval_s: int,
                  default_leak_flow: float) -> Command:
    """Parse and validate a command; raises :class:`InvalidInput` (only) for anything malformed."""
    try:
        data = load_json(payload, max_bytes=MAX_COMMAND_BYTES)
    except ContractError as exc:
        raise InvalidInput(f"not a valid JSON command ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput("not a JSON object")
    if "inject" in data:
        kind = data["inject"]
        if not isinstance(kind, str) or kind not in ("leak", "overuse"):
            raise InvalidInput("inject must be leak or overuse")
        meter = data.get("meter", "water" if kind == "leak" else None)
        if not isinstance(meter, str) or meter not in meters:
            raise InvalidInput(f"meter must be one of {', '.join(meters)}")
        hours = _number(data, "hours", default=24, high=24 * 366)
        if kind == "leak":
            return Inject("leak", meter, hours, flow=_number(data, "flow", default=default_leak_flow, high=1e6))
        return Inject("overuse", meter, hours, factor=_number(data, "factor", default=2.0, high=100))
    if data.get("clear") == "anomalies":
        return ClearAnomalies()
    if data.get("set") == "interval":
        interval = data.get("interval_s")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0:
            raise InvalidInput("interval_s must be a positive integer")
        if interval % base_interval_s:
            raise InvalidInput(f"interval_s must be a multiple of the fleet interval {base_interval_s}")
        return SetInterval(interval)
    if isinstance(data.get("offline"), dict):
        return GoOffline(_number(data["offline"], "hours", high=24 * 31))
    if "replace" in data:
        meter = data["replace"]
        if not isinstance(meter, str) or meter not in meters:
            raise InvalidInput(f"replace must name one of {', '.join(meters)}")
        serial = data.get("serial")
        if serial is not None and not (isinstance(serial, str) and 0 < len(serial) <= MAX_SERIAL
                                       and serial.isprintable()):
            raise InvalidInput(f"serial must be 1 to {MAX_SERIAL} printable characters")
        total = data.get("total")
        if total is not None:
            total = _number(data, "total", low=-1.0, high=1e9)   # (-1, 1e9]: 0 is a fine start register
            if total < 0:
                raise InvalidInput("total must not be negative")
        return ReplaceMeter(meter, serial, total)
    raise InvalidInput("unknown command (expected inject, clear, set, offline or replace)")


def replace_command(meter: str, *, serial: str | None = None, total: float | None = None) -> bytes:
    """The ``replace`` command an operator sends (``apt-energy replace-meter``)."""
    data: dict[str, Any] = {"replace": meter}
    if serial is not None:
        data["serial"] = serial
    if total is not None:
        data["total"] = total
    return json.dumps(data).encode()
