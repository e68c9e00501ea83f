"""A corpus of hostile device traffic: what a broken or malicious gateway can put on the broker.

Each item must be set aside (dead letter or quarantine row with a reason) without stopping a stage,
and without touching the honest readings published around it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from apt_energy.config import Household
from apt_energy.core.topics import device_base, reading_topic


@dataclass(frozen=True)
class Hostile:
    name: str
    topic: str
    payload: bytes
    retain: bool = False


def _reading(h: Household, when: datetime, seq: int, changes: dict[str, object]) -> dict[str, object]:
    body: dict[str, object] = {"device_id": h.device_id, "meter": "electricity", "seq": seq,
                               "ts": when.isoformat().replace("+00:00", "Z"), "interval_s": 3600,
                               "value": 1.0, "total": 1.0, "unit": "kWh"}
    body.update(changes)
    return body


BRIDGE_LEVEL = frozenset({"huge topic level", "3,000-deep JSON", "1,900-deep JSON within the size limit",
                          ">1 MB payload", "non-UTF-8 payload", "overlong device id", "wildcards in ids",
                          "duplicate keys", "retained junk on status", "retained huge status"})


def corpus(prefix: str, h: Household, ts: datetime) -> list[Hostile]:
    """Hostile messages aimed at household ``h``'s topics; seqs far above the fleet's, so a reading
    set aside can never shadow an honest one. Those named in :data:`BRIDGE_LEVEL` are the bridge's to
    dead-letter (topic, size, encoding, JSON shape, ids); the rest are well-formed JSON readings with
    hostile values that reach Kafka and must be quarantined by the stream job."""
    topic = reading_topic(prefix, h, "electricity")
    seq = 2**41

    def reading(n: int, **changes: object) -> bytes:
        return json.dumps(_reading(h, ts, seq + n, changes)).encode()

    long_unit = "1" * 5000
    long_id = h.device_id[:-len(h.unit_code)] + long_unit
    nested_3000 = b"[" * 3000 + b"]" * 3000
    nested_in_limit = b'{"device_id": "' + h.device_id.encode() + b'", "meter": "electricity", "x": ' + \
        b"[" * 1900 + b"]" * 1900 + b"}"
    return [
        Hostile("huge topic level", f"{device_base(prefix, h)}/{'x' * 20_000}/reading", reading(0)),
        Hostile("3,000-deep JSON", topic, nested_3000),
        Hostile("1,900-deep JSON within the size limit", topic, nested_in_limit),
        Hostile(">1 MB payload", topic, b'{"device_id": "' + b"A" * 1_100_000 + b'"}'),
        Hostile("non-UTF-8 payload", topic, b'{"device_id": "\xff\xfe\xfd", "meter": "\xc3\x28"}'),
        Hostile("NaN value", topic, reading(1, value=float("nan"), total=float("nan"))),
        Hostile("Infinity value", topic, reading(2, value=float("inf"))),
        Hostile("NUL in fields", topic, reading(3, unit="kWh\u0000", ts="2024-01-01T00:00:00\u0000Z")),
        Hostile("value >= 1e14", topic, reading(4, value=1e15, total=1e15)),
        Hostile("seq beyond 64 bits", topic, reading(5, seq=2**70)),
        Hostile("overlong device id", f"{device_base(prefix, h)[:-len(h.unit_code)]}{long_unit}/electricity/reading",
                json.dumps(_reading(h, ts, seq + 6, {"device_id": long_id})).encode()),
        Hostile("wildcards in ids", topic, reading(7, meter="electricity/+/#")),
        Hostile("duplicate keys", topic,
                reading(8)[:-1] + b', "value": -5, "device_id": "' + h.device_id.encode() + b'x"}'),
        Hostile("wrong types", topic, reading(9, value="12", seq="1", ts=12345)),
        Hostile("retained junk on status", f"{device_base(prefix, h)}/status", b"\x00\x01junk{", retain=True),
        Hostile("retained huge status", f"{device_base(prefix, h)}/status", b"{" * 100_000, retain=True),
    ]
