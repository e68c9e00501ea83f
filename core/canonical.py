"""Readings in the exact bytes :meth:`Reading.to_json` writes, recognised without a JSON parser.

Nearly every record the stream job judges is a reading our own gateways encoded, and for those the
contract's validator spent most of its time in the JSON parser and in checks the encoder already
guarantees (py-spy: 60 % of a staging worker). One regular expression over the bytes recognises that
canonical form: fixed key order, no whitespace, no escapes, schema 2, ``value``/``total`` written
positionally with 1–6 decimals and at most 9 integer digits, the unit one of the known meters'. Such a
payload is valid UTF-8 and JSON with no duplicate keys, no NaN, no control character and depth 1, so what
remains to check is what the pattern cannot say (integer ranges, the meter's unit, a real date).

Anything else — another key order, whitespace, escapes, schema 1, exponents, a number below 1e-4 that
``repr`` writes as ``1e-05`` — is not rejected here: :meth:`CanonicalReader.read` returns ``None`` and the
caller asks the contract's validator, which has the last word. ``tests/core/test_canonical.py``
checks on generated and mutated payloads that whatever this accepts, the validator accepts with the same
fields.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import NamedTuple

from apt_energy.core.contract import (
    BIGINT_MAX,
    INT_MAX,
    MAX_LENGTH,
    MAX_PAYLOAD_BYTES,
    ContractError,
    Reading,
    parse_ts,
    validate_reading,
)

__all__ = ["Canonical", "CanonicalReader", "instant", "names"]

_NUMBER = rb"((?:0|[1-9][0-9]{0,8})\.[0-9]{1,6})"    # < 1e9, 1-6 decimals: at most 15 significant digits
_INTEGER = rb"(0|[1-9][0-9]{0,18})"                   # BIGINT_MAX has 19 digits: the range is checked after
_READING = re.compile(
    rb'\{"v":2,"device_id":"([A-Za-z0-9_.-]{1,%d})","meter":"([a-z][a-z0-9_]{0,%d})",' % (
        MAX_LENGTH["device_id"], MAX_LENGTH["meter"] - 1)
    + rb'"life":' + _INTEGER + rb',"seq":' + _INTEGER
    + rb',"ts":"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z)"'
    + rb',"interval_s":([1-9][0-9]{0,9}),"value":' + _NUMBER + rb',"total":' + _NUMBER
    # no quote, backslash or control byte: nothing escaped in JSON or in COPY's text format. The reader
    # then takes only the known units, each one the contract accepts (UTF-8: "m³" is 3 bytes).
    + rb',"unit":"([^"\\\x00-\x1f]{1,%d})"\}' % (4 * MAX_LENGTH["unit"]))


class Canonical(NamedTuple):
    """The fields of a canonical reading, as the bytes the payload wrote them in (each is also what
    PostgreSQL's text input reads as the same value)."""

    device_id: bytes
    meter: bytes
    life: bytes
    seq: bytes
    ts: bytes
    interval_s: bytes
    value: bytes
    total: bytes
    unit: bytes


@functools.lru_cache(maxsize=4096)
def instant(ts: bytes) -> datetime | None:
    """A canonical ``ts`` as an aware UTC datetime, or ``None`` when it names no real instant
    (``2024-02-30``). Cached: the readings of one interval share their ts."""
    try:
        return parse_ts(ts.decode("ascii"))
    except ContractError:
        return None


def names(payload: bytes, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> tuple[bytes, bytes] | None:
    """``(device_id, meter)`` of a canonical reading, any unit, that :func:`apt_energy.core.contract.load_json`
    accepts (the bridge's check: strict JSON naming its device and meter), else ``None`` (ask load_json)."""
    if len(payload) > max_bytes:
        return None
    m = _READING.fullmatch(payload)
    if m is None:
        return None
    try:
        m.group(9).decode("utf-8")   # the unit is the one group that may hold any byte but ", \ and controls
    except UnicodeDecodeError:
        return None
    return m.group(1), m.group(2)


def _acceptable(meter: str, unit: str, units: Mapping[str, str]) -> bool:
    sample = Reading("a", meter, 0, datetime(2024, 1, 1, tzinfo=UTC), 1, 0.0, 0.0, unit).to_json()
    return isinstance(validate_reading(sample, units=units), Reading) and _READING.fullmatch(sample) is not None


class CanonicalReader:
    """Recognises canonical readings of the known meters (``units``: meter → unit)."""

    def __init__(self, units: Mapping[str, str], *, max_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        # a unit the contract would refuse (a control character, too long) never takes this path
        self._units = {m.encode(): u.encode() for m, u in units.items() if _acceptable(m, u, units)}
        self._max_bytes = max_bytes

    def read(self, payload: bytes) -> Canonical | None:
        """The reading's fields when ``payload`` is canonical and keeps the contract, else ``None``
        (which says nothing about validity: ask :func:`apt_energy.core.contract.validate_reading`)."""
        if len(payload) > self._max_bytes:
            return None
        m = _READING.fullmatch(payload)
        if m is None:
            return None
        r = Canonical._make(m.groups())
        # only a 19-digit seq or life, or a 10-digit interval, can leave its column's range
        if ((len(r.seq) == 19 and int(r.seq) > BIGINT_MAX) or (len(r.life) == 19 and int(r.life) > BIGINT_MAX)
                or (len(r.interval_s) == 10 and int(r.interval_s) > INT_MAX)):
            return None
        if self._units.get(r.meter) != r.unit or instant(r.ts) is None:
            return None
        return r
