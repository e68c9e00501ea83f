"""The message contract, defined once: what a device publishes and every later stage reads and stores.

A reading is one meter's consumption over one interval. ``value`` and ``total`` are JSON numbers (MQTT
Explorer plots them) with at most :data:`MAX_DECIMALS` decimals and below :data:`MAX_AMOUNT`, so each is
a decimal with at most 15 significant digits: the double a JSON parser makes of it converts back to the
same decimal everywhere (Python's ``repr``, Spark's cast to DECIMAL(20, 6)), and sums in NUMERIC are exact.

Identity: sequence numbers and device lives
-------------------------------------------
``seq`` increases by one per meter and survives restarts of the gateway process (the edge saves a
high-water mark ahead of use). It does not survive the loss of that state: a replaced gateway, or one
whose state volume was wiped, starts again at 0, and its new readings would collide with the old ones
downstream. ``life`` names the generation of a gateway's sequence state: a non-negative integer chosen
when that state is created (the edge uses Unix milliseconds at creation) and stored with it, carried in
every reading. A new life restarts ``seq`` at 0 without reusing an identity, because a reading is
identified by **(device_id, meter, life, seq)**. Payloads from before lives existed have no ``life``:
it reads as 0. A reading whose identity is already stored with a different value or time is a reused
sequence (a lost state that went back in time within one life); the sink quarantines it as ``reused``.

Validation
----------
One validator for every stage (the bridge before Kafka, the stream job before PostgreSQL): it accepts
exactly what PostgreSQL will store (lengths of the VARCHAR columns in ``database/migrations``, NUMERIC
and BIGINT/INTEGER ranges, no NUL or lone surrogates, JSON that ``jsonb`` accepts) and rejects anything
else with a :class:`ContractError` whose :class:`Reason` is a short stable code, plus a detail. Hostile
bytes (huge, deeply nested, not UTF-8, duplicate keys, NaN) give a reason, never another exception.

* the bridge: :func:`decode_message` (topic + payload → :class:`Accepted` or :class:`Rejection`);
* the stream job: :func:`validate_reading` and :func:`validate_device_record` in a UDF
  (``spark/transforms.py``), so a reason reads the same in a dead letter and in a quarantine row;
* anyone: :meth:`Reading.from_json`, :meth:`DeviceMeta.from_json`, :meth:`DeviceStatus.from_json` (raise),
  :func:`load_json` (strict JSON as jsonb takes it).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, Literal

from apt_energy.core import topics
from apt_energy.core.errors import InvalidInput

__all__ = [
    "BIGINT_MAX", "INTEGER_BITS", "INT_MAX", "MAX_AMOUNT", "MAX_DECIMALS", "MAX_DEPTH", "MAX_LENGTH",
    "MAX_PAYLOAD_BYTES", "SCHEMA_VERSION", "Accepted", "ContractError", "DeviceMeta", "DeviceStatus", "InvalidInput",
    "MeterInfo", "Reading", "Reason", "Rejection", "check_window", "decode_message", "exact", "format_ts",
    "load_json", "parse_ts", "usage_month", "validate_device_record", "validate_reading", "window_rejections",
]

MAX_DECIMALS: Final = 6
SCHEMA_VERSION: Final = 2            # 2 added ``life``; version 1 payloads (no life) are still accepted
MAX_AMOUNT: Final = 10**9            # value, total < 1e9: 9 + 6 digits = DBL_DIG (15), exact as doubles
MAX_PAYLOAD_BYTES: Final = 16_384    # a reading is ~200 bytes, meta ~400; the bridge may set a lower cap
MAX_DEPTH: Final = 8                 # meta nests 3 levels; nothing legitimate needs more
BIGINT_MAX: Final = 2**63 - 1
INT_MAX: Final = 2**31 - 1
# Character limits of the columns the fields end up in (database/migrations/*.sql).
MAX_LENGTH: Final[Mapping[str, int]] = {
    "device_id": 64,     # households/meter_readings/devices.device_id VARCHAR(64)
    "meter": 20,         # energy_types.key VARCHAR(20)
    "unit": 10,          # energy_types.unit VARCHAR(10)
    "firmware": 64,      # devices.firmware VARCHAR(64)
    "complex": 32,       # buildings.complex_id VARCHAR(32)
    "state": 16,         # devices.state VARCHAR(16)
    "ts": 40,
    "serial": 64,        # a meter's serial number (meta only)
}
# Integer fields and the width of the column they land in (bits): the Spark schema reads this.
INTEGER_BITS: Final[Mapping[str, int]] = {"seq": 64, "life": 64, "interval_s": 32, "v": 32}
MAX_METERS: Final = 16

_DEVICE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_METER = re.compile(r"[a-z][a-z0-9_]{0,19}")
_COMPLEX = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# C0/C1 controls and lone surrogates: PostgreSQL text refuses NUL, UTF-8 refuses surrogates, and a
# control character in an id or unit is never intended.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# What jsonb (and text) refuses anywhere in a document: \u0000 and unpaired surrogates.
_JSONB_BAD = re.compile("[\x00\ud800-\udfff]")


class Reason(StrEnum):
    """Why input was rejected: stable codes shared by the bridge (dead-letter header) and the stream job
    (quarantine row). The full reason text is ``<code>: <detail>``."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    TOO_DEEP = "too_deep"
    DUPLICATE_KEY = "duplicate_key"
    NOT_FINITE = "not_finite"
    BAD_CHARACTER = "bad_character"
    NOT_OBJECT = "not_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    TOO_LONG = "too_long"
    BAD_FORMAT = "bad_format"
    OUT_OF_RANGE = "out_of_range"
    NEGATIVE = "negative"
    TOO_PRECISE = "too_precise"
    BAD_TS = "bad_ts"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_METER = "unknown_meter"
    UNIT_MISMATCH = "unit_mismatch"
    TS_IN_FUTURE = "ts_in_future"
    TS_TOO_OLD = "ts_too_old"
    BAD_TOPIC = "bad_topic"
    DEVICE_MISMATCH = "device_mismatch"
    METER_MISMATCH = "meter_mismatch"
    # The stream job's measurement identity (spark/sink.py): an interval of a meter already stored with
    # another value or register, or one overlapping a stored interval of another length or alignment.
    CONFLICT = "conflict"
    OVERLAP = "overlap"


class ContractError(InvalidInput):
    """A payload breaks the contract; carries the stable :class:`Reason` code and a short detail."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)


def _fail(reason: Reason, detail: str = "") -> ContractError:
    return ContractError(reason, detail)


def _show(value: object, limit: int = 40) -> str:
    """A value for a reason text: short, one line, no control characters."""
    text = value if isinstance(value, str) else repr(value)
    return _CONTROL.sub("?", text[:limit])


# ------------------------------------------------------------------------------------ time and numbers


def format_ts(ts: datetime) -> str:
    """UTC ISO-8601 with a ``Z``: ``2024-01-01T03:00:00Z`` (microseconds only when there are some)."""
    if ts.tzinfo is None:
        raise InvalidInput("timestamp without time zone")
    utc = ts.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def parse_ts(text: object, name: str = "ts") -> datetime:
    """An ISO-8601 time with a zone (``Z`` or an offset) → an aware UTC datetime."""
    if not isinstance(text, str):
        raise _fail(Reason.WRONG_TYPE, f"{name} is not a string")
    if len(text) > MAX_LENGTH["ts"] or not text.isascii():
        raise _fail(Reason.BAD_TS, f"{name} is not ISO-8601: {_show(text)!r}")
    try:
        ts = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise _fail(Reason.BAD_TS, f"{name} is not ISO-8601: {_show(text)!r}") from None
    if ts.tzinfo is None:
        raise _fail(Reason.BAD_TS, f"{name} has no time zone")
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise _fail(Reason.BAD_TS, f"{name} is out of range") from None


def usage_month(ts: datetime, tz: tzinfo) -> date:
    """The local month a reading counts in: the month of the last instant of its interval.

    ``ts`` is the interval's (exclusive) end, so a reading ending at local midnight on the 1st still
    belongs to the month before. Spark computes the same in ``spark/transforms.py``.
    """
    local = (ts - timedelta(seconds=1)).astimezone(tz)
    return date(local.year, local.month, 1)


def exact(value: float) -> Decimal:
    """The decimal a contract number stands for (its shortest repr, as JSON wrote it)."""
    return Decimal(repr(value))


# ------------------------------------------------------------------------------------------- JSON


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _fail(Reason.DUPLICATE_KEY, _show(dup))
    return obj


def _constant(name: str) -> float:
    raise _fail(Reason.NOT_FINITE, name)


def _nesting(text: str) -> int:
    """Deepest bracket nesting outside strings (only run when there are many brackets)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _bad_scalar(value: object, escapes: bool) -> ContractError | None:
    if type(value) is float:
        if value - value != 0:  # inf - inf and nan - nan are nan
            return _fail(Reason.NOT_FINITE, "a number overflows a double")
    elif escapes and type(value) is str and _JSONB_BAD.search(value):
        return _fail(Reason.BAD_CHARACTER, "a string has NUL or a lone surrogate")
    return None


def _check_tree(root: object, *, escapes: bool = True) -> None:
    """Every string and key jsonb accepts, every number finite, nesting within :data:`MAX_DEPTH`.

    NUL and surrogates can only come from ``\\u`` escapes (the text is valid UTF-8 and the parser refuses raw
    control characters), so without escapes (``escapes=False``) strings need no look. Iterative: no
    recursion limit to hit."""
    stack: list[tuple[object, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict or kind is list:
            if depth > MAX_DEPTH:
                raise _fail(Reason.TOO_DEEP, f"more than {MAX_DEPTH} levels")
            if kind is dict:
                if escapes:
                    for key in node:  # type: ignore[attr-defined]
                        if _JSONB_BAD.search(key):
                            raise _fail(Reason.BAD_CHARACTER, f"key {_show(key)!r} has NUL or a lone surrogate")
                children = node.values()  # type: ignore[attr-defined]
            else:
                children = node
            for child in children:
                ck = type(child)
                if ck is dict or ck is list:
                    stack.append((child, depth + 1))
                elif (bad := _bad_scalar(child, escapes)) is not None:
                    raise bad
        elif (bad := _bad_scalar(node, escapes)) is not None:
            raise bad


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


def load_json(payload: bytes | bytearray | memoryview | str, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> Any:
    """Strict JSON as PostgreSQL's jsonb would take it: UTF-8, at most ``max_bytes``, no duplicate keys,
    no NaN/Infinity or overflowing numbers, no ``\\u0000`` or lone surrogates, at most :data:`MAX_DEPTH`
    levels. Raises :class:`ContractError`; never another exception."""
    if isinstance(payload, str):
        if len(payload) > max_bytes:  # each character is at least one byte
            raise _fail(Reason.TOO_LARGE, f"more than {max_bytes} bytes")
        try:
            data = payload.encode("utf-8")
        except UnicodeEncodeError:
            raise _fail(Reason.NOT_UTF8, "lone surrogate") from None
    else:
        data = bytes(payload)
    if len(data) > max_bytes:
        raise _fail(Reason.TOO_LARGE, f"{len(data)} bytes > {max_bytes}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(Reason.NOT_UTF8, f"invalid byte at {exc.start}") from None
    # Counting brackets is C-speed; only a document with many of them is scanned for its depth, so a
    # 3,000-deep array is refused before the parser recurses into it.
    if text.count("[") + text.count("{") > MAX_DEPTH and _nesting(text) > MAX_DEPTH:
        raise _fail(Reason.TOO_DEEP, f"more than {MAX_DEPTH} levels")
    try:
        root = _DECODER.decode(text)
    except ContractError:
        raise
    except RecursionError:
        raise _fail(Reason.TOO_DEEP, f"more than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise _fail(Reason.NOT_JSON, f"{exc.msg} at {exc.pos}") from None
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise _fail(Reason.NOT_JSON, _show(str(exc), 60)) from None
    _check_tree(root, escapes="\\u" in text)
    return root


def _object(payload: bytes | bytearray | memoryview | str, max_bytes: int) -> dict[str, Any]:
    data = load_json(payload, max_bytes=max_bytes)
    if not isinstance(data, dict):
        raise _fail(Reason.NOT_OBJECT, type(data).__name__ if data is not None else "null")
    return data


# ------------------------------------------------------------------------------------------- fields


def _required(data: Mapping[str, Any], name: str) -> Any:
    try:
        return data[name]
    except KeyError:
        raise _fail(Reason.MISSING_FIELD, name) from None


def _text(value: object, name: str, *, max_len: int, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str):
        raise _fail(Reason.WRONG_TYPE, f"{name} is not a string")
    if not value:
        raise _fail(Reason.BAD_FORMAT, f"{name} is empty")
    if len(value) > max_len:
        raise _fail(Reason.TOO_LONG, f"{name} has {len(value)} characters > {max_len}")
    if pattern is not None:
        if pattern.fullmatch(value) is None:
            raise _fail(Reason.BAD_FORMAT, f"{name} {_show(value)!r} does not match {pattern.pattern}")
    elif _CONTROL.search(value):
        raise _fail(Reason.BAD_CHARACTER, f"{name} has a control character or lone surrogate")
    return value


def _integer(value: object, name: str, *, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(Reason.WRONG_TYPE, f"{name} is not an integer")
    if not low <= value <= high:
        if value < 0 <= low:
            raise _fail(Reason.NEGATIVE, f"{name} is negative")
        raise _fail(Reason.OUT_OF_RANGE, f"{name} must be {low}..{high}")
    return value


def _amount(value: object, name: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _fail(Reason.WRONG_TYPE, f"{name} is not a number")
    if isinstance(value, int):
        if not -MAX_AMOUNT < value < MAX_AMOUNT:
            raise _fail(Reason.OUT_OF_RANGE, f"{name} must be below {MAX_AMOUNT:.0e}")
        value = float(value)
    if not math.isfinite(value):
        raise _fail(Reason.NOT_FINITE, name)
    if value < 0:
        raise _fail(Reason.NEGATIVE, f"{name} is negative")
    if value >= MAX_AMOUNT:
        raise _fail(Reason.OUT_OF_RANGE, f"{name} must be below {MAX_AMOUNT:.0e}")
    # round() is correctly rounded, so this holds exactly when the shortest repr has ≤ 6 decimals
    if round(value, MAX_DECIMALS) != value:
        raise _fail(Reason.TOO_PRECISE, f"{name} has more than {MAX_DECIMALS} decimals")
    return value + 0.0  # -0.0 → 0.0


# ------------------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Reading:
    """One meter's consumption over ``interval_s`` seconds ending at ``ts``; (device_id, meter, life,
    seq) identifies it."""

    device_id: str
    meter: str
    seq: int
    ts: datetime
    interval_s: int
    value: float
    total: float
    unit: str
    life: int = 0
    v: int = field(default=SCHEMA_VERSION)

    def to_dict(self) -> dict[str, Any]:
        return {"v": self.v, "device_id": self.device_id, "meter": self.meter, "life": self.life,
                "seq": self.seq, "ts": format_ts(self.ts), "interval_s": self.interval_s, "value": self.value,
                "total": self.total, "unit": self.unit}

    def to_json(self) -> bytes:
        """The payload, compact UTF-8 JSON. Written without the generic encoder for plain finite floats: a
        fleet publishes thousands a second and ``json.dumps`` of the dict was a tenth of its CPU (py-spy);
        ``tests/core/test_contract.py`` pins the bytes to the generic encoder's."""
        value, total = self.value, self.total
        if type(value) is not float or type(total) is not float or not (_finite(value) and _finite(total)):
            return self._generic_json()
        return (f'{{"v":{self.v},"device_id":{_json_text(self.device_id)},"meter":{_json_text(self.meter)},'
                f'"life":{self.life},"seq":{self.seq},"ts":"{_ts_text(self.ts)}",'
                f'"interval_s":{self.interval_s},"value":{value!r},"total":{total!r},'
                f'"unit":{_json_text(self.unit)}}}').encode()

    def _generic_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, payload: bytes | bytearray | memoryview | str, *, units: Mapping[str, str] | None = None,
                  max_bytes: int = MAX_PAYLOAD_BYTES) -> Reading:
        """Parse and validate; raises :class:`ContractError` naming the first problem. With ``units``
        (meter → unit), the meter must be one of them and the unit its own."""
        return cls.from_dict(_object(payload, max_bytes), units=units)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, units: Mapping[str, str] | None = None) -> Reading:
        """Validate a decoded JSON object (see :meth:`from_json`)."""
        fields = _well_formed(data)
        if fields is None:  # something is wrong: the field-by-field checks say what, in a fixed order
            return cls._explain(data, units)
        device_id, meter, seq, ts_text, interval_s, value, total, unit, life, v = fields
        # every field but ts checked: the field-by-field order would reach ts with the same result
        ts = parse_ts(ts_text)
        if units is not None:
            _check_unit(meter, unit, units)
        return cls(device_id, meter, seq, ts, interval_s, value + 0.0, total + 0.0, unit, life, v)

    @classmethod
    def _explain(cls, data: Mapping[str, Any], units: Mapping[str, str] | None) -> Reading:
        v = _integer(data.get("v", 1), "v", low=1, high=INT_MAX)
        if v > SCHEMA_VERSION:
            raise _fail(Reason.UNSUPPORTED_VERSION, f"v={v} > {SCHEMA_VERSION}")
        device_id = _text(_required(data, "device_id"), "device_id", max_len=MAX_LENGTH["device_id"],
                          pattern=_DEVICE_ID)
        meter = _text(_required(data, "meter"), "meter", max_len=MAX_LENGTH["meter"], pattern=_METER)
        seq = _integer(_required(data, "seq"), "seq", low=0, high=BIGINT_MAX)
        ts = parse_ts(_required(data, "ts"))
        interval_s = _integer(_required(data, "interval_s"), "interval_s", low=1, high=INT_MAX)
        value = _amount(_required(data, "value"), "value")
        total = _amount(_required(data, "total"), "total")
        unit = _text(_required(data, "unit"), "unit", max_len=MAX_LENGTH["unit"])
        life = _integer(data.get("life", 0), "life", low=0, high=BIGINT_MAX)
        if units is not None:
            _check_unit(meter, unit, units)
        return cls(device_id=device_id, meter=meter, seq=seq, ts=ts, interval_s=interval_s, value=value,
                   total=total, unit=unit, life=life, v=v)


@functools.lru_cache(maxsize=4096)
def _json_text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _ts_text(ts: datetime) -> str:
    # a fleet's readings share their interval's end: one strftime per tick, not per reading
    return format_ts(ts)


def _finite(x: float) -> bool:
    return x - x == 0.0


def _check_unit(meter: str, unit: str, units: Mapping[str, str]) -> None:
    expected = units.get(meter)
    if expected is None:
        raise _fail(Reason.UNKNOWN_METER, meter)
    if unit != expected:
        raise _fail(Reason.UNIT_MISMATCH, f"{_show(unit, 10)} is not {meter}'s unit {expected}")


_MAX_UNIT = MAX_LENGTH["unit"]


def _well_formed(data: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """The fields of a reading whose every field but ``ts`` keeps the contract, else ``None``.

    The stream job's hot path: one expression instead of a call per field. It accepts a subset of what
    :meth:`Reading._explain` accepts, with the same values (a property test checks it); anything else
    goes there for its reason."""
    try:
        device_id, meter, seq, ts_text = data["device_id"], data["meter"], data["seq"], data["ts"]
        interval_s, value, total, unit = data["interval_s"], data["value"], data["total"], data["unit"]
    except KeyError:
        return None
    v, life = data.get("v", 1), data.get("life", 0)
    ok = (type(device_id) is str and _DEVICE_ID.fullmatch(device_id) is not None
          and type(meter) is str and _METER.fullmatch(meter) is not None
          and type(seq) is int and 0 <= seq <= BIGINT_MAX
          and type(interval_s) is int and 0 < interval_s <= INT_MAX
          and type(value) is float and 0.0 <= value < MAX_AMOUNT and round(value, MAX_DECIMALS) == value
          and type(total) is float and 0.0 <= total < MAX_AMOUNT and round(total, MAX_DECIMALS) == total
          and type(unit) is str and 0 < len(unit) <= _MAX_UNIT and _CONTROL.search(unit) is None
          and type(life) is int and 0 <= life <= BIGINT_MAX
          and type(v) is int and 1 <= v <= SCHEMA_VERSION)
    return (device_id, meter, seq, ts_text, interval_s, value, total, unit, life, v) if ok else None


def validate_reading(payload: bytes | bytearray | memoryview | str | None, *,
                     units: Mapping[str, str] | None = None,
                     max_bytes: int = MAX_PAYLOAD_BYTES) -> Reading | Rejection:
    """:meth:`Reading.from_json` that returns the rejection instead of raising (the stream job's UDF)."""
    if payload is None:
        return Rejection(Reason.NOT_JSON, "empty record")
    try:
        return Reading.from_json(payload, units=units, max_bytes=max_bytes)
    except ContractError as exc:
        return Rejection(exc.reason, exc.detail)


def window_rejections(*, max_future_s: int, max_past_days: int) -> tuple[Rejection, Rejection]:
    """The rejections of a reading timed too far ahead / too long ago (the stream job's Spark expressions
    use the same texts)."""
    return (Rejection(Reason.TS_IN_FUTURE, f"more than {max_future_s}s ahead"),
            Rejection(Reason.TS_TOO_OLD, f"more than {max_past_days} days old"))


def check_window(ts: datetime, *, now: datetime, max_future_s: int, max_past_days: int) -> Rejection | None:
    """A reading's time must lie in [now - max_past_days, now + max_future_s]: a clock far off is refused."""
    future, old = window_rejections(max_future_s=max_future_s, max_past_days=max_past_days)
    if ts > now + timedelta(seconds=max_future_s):
        return future
    if ts < now - timedelta(days=max_past_days):
        return old
    return None


def validate_device_record(kind: str, device_id: str, payload: bytes | bytearray | memoryview | str | None, *,
                           max_bytes: int = MAX_PAYLOAD_BYTES) -> DeviceStatus | DeviceMeta | Rejection:
    """A devices-topic record (Kafka key ``<device_id>/<kind>``) → its status or meta, or why not."""
    if payload is None:
        return Rejection(Reason.NOT_JSON, "empty record", device_id)
    try:
        message: DeviceStatus | DeviceMeta
        if kind == "status":
            message = DeviceStatus.from_json(payload, max_bytes=max_bytes)
        elif kind == "meta":
            message = DeviceMeta.from_json(payload, max_bytes=max_bytes)
        else:
            return Rejection(Reason.BAD_TOPIC, f"unknown device record kind {_show(kind, 20)!r}", device_id)
    except ContractError as exc:
        return Rejection(exc.reason, exc.detail, device_id)
    if message.device_id != device_id:
        return Rejection(Reason.DEVICE_MISMATCH, f"payload says {message.device_id!r}, key says "
                                                 f"{_show(device_id, 64)!r}", device_id)
    return message


@dataclass(frozen=True)
class MeterInfo:
    """One meter of a device, and optionally which physical meter measures it: the ``life`` its readings
    carry (Unix ms at installation), its ``serial`` and ``since`` when (simulated UTC time) it was
    installed. A replaced meter announces a new life; documents without these fields stay valid."""

    meter: str
    unit: str
    life: int | None = None
    serial: str | None = None
    since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"meter": self.meter, "unit": self.unit}
        if self.life is not None:
            out["life"] = self.life
        if self.serial is not None:
            out["serial"] = self.serial
        if self.since is not None:
            out["since"] = format_ts(self.since)
        return out


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
            "meters": [m.to_dict() for m in self.meters],
            "firmware": self.firmware, "interval_s": self.interval_s,
        }, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, payload: bytes | bytearray | memoryview | str, *,
                  max_bytes: int = MAX_PAYLOAD_BYTES) -> DeviceMeta:
        """Parse and validate (the raw document is stored as jsonb); raises :class:`ContractError`."""
        data = _object(payload, max_bytes)
        device_id = _text(_required(data, "device_id"), "device_id", max_len=MAX_LENGTH["device_id"],
                          pattern=_DEVICE_ID)
        household = _required(data, "household")
        if not isinstance(household, dict):
            raise _fail(Reason.WRONG_TYPE, "household is not an object")
        complex_id = _text(_required(household, "complex"), "household.complex", max_len=MAX_LENGTH["complex"],
                           pattern=_COMPLEX)
        numbers = [_integer(_required(household, k), f"household.{k}", low=1, high=INT_MAX)
                   for k in ("building", "floor", "unit")]
        meters = _required(data, "meters")
        if not isinstance(meters, list):
            raise _fail(Reason.WRONG_TYPE, "meters is not a list")
        if len(meters) > MAX_METERS:
            raise _fail(Reason.OUT_OF_RANGE, f"more than {MAX_METERS} meters")
        infos = []
        for i, m in enumerate(meters):
            if not isinstance(m, dict):
                raise _fail(Reason.WRONG_TYPE, f"meters[{i}] is not an object")
            life, serial, since = m.get("life"), m.get("serial"), m.get("since")
            infos.append(MeterInfo(
                _text(_required(m, "meter"), f"meters[{i}].meter", max_len=MAX_LENGTH["meter"], pattern=_METER),
                _text(_required(m, "unit"), f"meters[{i}].unit", max_len=MAX_LENGTH["unit"]),
                life=None if life is None else _integer(life, f"meters[{i}].life", low=0, high=BIGINT_MAX),
                serial=None if serial is None else _text(serial, f"meters[{i}].serial", max_len=MAX_LENGTH["serial"]),
                since=None if since is None else parse_ts(since, f"meters[{i}].since")))
        firmware = _text(_required(data, "firmware"), "firmware", max_len=MAX_LENGTH["firmware"])
        interval_s = _integer(_required(data, "interval_s"), "interval_s", low=1, high=INT_MAX)
        return cls(device_id, complex_id, numbers[0], numbers[1], numbers[2], tuple(infos), firmware, interval_s)


DeviceState = Literal["online", "offline"]


@dataclass(frozen=True)
class DeviceStatus:
    """Retained on ``.../status``: ``online`` on connect, ``offline`` as Last Will or on clean shutdown."""

    device_id: str
    state: DeviceState
    ts: datetime

    def to_json(self) -> bytes:
        return json.dumps({"device_id": self.device_id, "state": self.state, "ts": format_ts(self.ts)},
                          separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, payload: bytes | bytearray | memoryview | str, *,
                  max_bytes: int = MAX_PAYLOAD_BYTES) -> DeviceStatus:
        """Parse and validate; raises :class:`ContractError`."""
        data = _object(payload, max_bytes)
        device_id = _text(_required(data, "device_id"), "device_id", max_len=MAX_LENGTH["device_id"],
                          pattern=_DEVICE_ID)
        state = _required(data, "state")
        if state not in ("online", "offline"):
            raise _fail(Reason.BAD_FORMAT, f"state {_show(state, 20)!r} is not online or offline")
        return cls(device_id, state, parse_ts(_required(data, "ts")))


# ------------------------------------------------------------------------------ topic + payload


Message = Reading | DeviceStatus | DeviceMeta


@dataclass(frozen=True)
class Rejection:
    """Why a message was refused; ``str()`` is the reason text for dead letters and quarantine rows."""

    reason: Reason
    detail: str = ""
    device_id: str | None = None     # when the topic named a device

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(frozen=True)
class Accepted:
    """A message that keeps the contract: its topic, and its parsed payload (``None`` for commands,
    which are the device's to judge)."""

    topic: topics.DeviceTopic
    message: Message | None


def decode_message(prefix: str, topic: str | bytes, payload: bytes | bytearray | memoryview | str, *,
                   max_bytes: int = MAX_PAYLOAD_BYTES, units: Mapping[str, str] | None = None
                   ) -> Accepted | Rejection:
    """Topic + payload → the validated message or the reason it is refused; never raises for any input.

    The payload must name the device (and, for a reading, the meter) its topic names."""
    try:
        where = topics.parse(prefix, topic)
    except InvalidInput as exc:
        return Rejection(Reason.BAD_TOPIC, str(exc))
    device_id = where.device_id
    if where.kind == "cmd":
        return Accepted(where, None)
    try:
        message: Message
        if where.kind == "reading":
            message = Reading.from_json(payload, units=units, max_bytes=max_bytes)
            if message.meter != where.meter:
                return Rejection(Reason.METER_MISMATCH, f"payload says {message.meter!r}, topic says {where.meter!r}",
                                 device_id)
        elif where.kind == "status":
            message = DeviceStatus.from_json(payload, max_bytes=max_bytes)
        else:
            message = DeviceMeta.from_json(payload, max_bytes=max_bytes)
    except ContractError as exc:
        return Rejection(exc.reason, exc.detail, device_id)
    if message.device_id != device_id:
        return Rejection(Reason.DEVICE_MISMATCH, f"payload says {message.device_id!r}, topic says {device_id!r}",
                         device_id)
    return Accepted(where, message)
