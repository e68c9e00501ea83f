"""The devices topic into ``devices`` and ``meter_lives``: one transaction per micro-batch; records the
contract refused and records the database refuses are quarantined with their reasons, the rest committed."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

import psycopg
from apt_energy.spark.poison import find_poison, is_data_error, printable, probe, rejection

logger = logging.getLogger(__name__)

__all__ = ["DEVICE_STATES", "DeviceRecord", "DeviceState", "write_devices"]

DeviceState = Literal["online", "offline"]
DEVICE_STATES: tuple[DeviceState, ...] = ("online", "offline")


class DeviceRecord(NamedTuple):
    """One parsed Kafka record of the devices topic (status or meta)."""

    device_id: str
    kind: Literal["status", "meta"]
    state: str | None           # a DeviceState when valid; anything a device sent otherwise
    firmware: str | None
    interval_s: int | None
    raw: str | None
    kafka_ts: datetime
    partition: int
    offset: int
    reason: str | None = None   # set when the contract refused the record (spark/transforms.py)


def write_devices(conn: psycopg.Connection, batch_id: int, rows: Iterable[Sequence[Any]], *,
                  devices_topic: str) -> int:
    """Rows in :class:`DeviceRecord` order (``transforms.DEVICE_COLUMNS``). One transaction: records the
    contract refused (their ``reason`` is set) and records the database refuses are quarantined with
    their reasons, the rest committed. Returns the devices written."""
    parsed = [DeviceRecord._make(r) for r in rows]
    rejected = [(r, r.reason) for r in parsed if r.reason is not None]
    records = [r for r in parsed if r.reason is None]
    try:
        with conn.transaction():
            return _apply(conn, records, rejected, devices_topic)
    except psycopg.Error as exc:
        if not is_data_error(exc):
            raise
        logger.warning("devices batch refused, isolating poison batch=%d reason=%s", batch_id, rejection(exc))
    with conn.transaction():
        bad = find_poison(records, lambda subset: probe(conn, lambda: _apply(conn, subset, [], devices_topic)))
        good = [r for i, r in enumerate(records) if i not in bad]
        return _apply(conn, good, rejected + [(records[i], reason) for i, reason in bad.items()], devices_topic)


def _apply(conn: psycopg.Connection, records: Sequence[DeviceRecord], poisoned: list[tuple[DeviceRecord, str]],
           devices_topic: str) -> int:
    latest: dict[str, dict[str, Any]] = {}
    bad = list(poisoned)
    for r in records:
        entry = latest.setdefault(r.device_id, {"device_id": r.device_id, "last_seen": r.kafka_ts})
        entry["last_seen"] = max(entry["last_seen"], r.kafka_ts)
        if r.kind == "status":
            if r.state not in DEVICE_STATES:
                bad.append((r, f"status without a valid state: {str(r.state)[:20]!r}"))
                continue
            entry["state"] = r.state
        else:
            entry.update(firmware=r.firmware, interval_s=r.interval_s, meta=r.raw)
    for e in latest.values():
        conn.execute(
            """INSERT INTO devices AS d (device_id, household_id, state, firmware, interval_s, meta, last_seen)
               VALUES (%(device_id)s::text, (SELECT id FROM households WHERE device_id = %(device_id)s::text),
                       COALESCE(%(state)s::text, 'unknown'), %(firmware)s::text, %(interval_s)s::int,
                       %(meta)s::jsonb, %(last_seen)s::timestamptz)
               ON CONFLICT (device_id) DO UPDATE SET
                   state = COALESCE(%(state)s::text, d.state),
                   firmware = COALESCE(EXCLUDED.firmware, d.firmware),
                   interval_s = COALESCE(EXCLUDED.interval_s, d.interval_s),
                   meta = COALESCE(EXCLUDED.meta, d.meta),
                   last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
                   updated_at = now()""",
            {"state": None, "firmware": None, "interval_s": None, "meta": None, **e})
        if e.get("meta") is not None:
            conn.execute(_META_LIVES, {"device_id": e["device_id"], "meta": e["meta"]})
    for r, reason in bad:
        conn.execute(
            """INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
               VALUES (%s, %s, %s, %s, left(%s, 64), %s)
               ON CONFLICT DO NOTHING""",
            (devices_topic, r.partition, r.offset, reason, printable(r.device_id), printable(r.raw)))
    return len(latest)


# The retained meta's meters list may name each meter's life, serial and since (a replaced meter is a new
# life): the meter's history keeps them, whether its readings came first or not.
_META_LIVES = """
INSERT INTO meter_lives AS l (device_id, meter, life, serial, since)
SELECT %(device_id)s::text, m->>'meter', (m->>'life')::bigint, left(m->>'serial', 64), (m->>'since')::timestamptz
FROM jsonb_array_elements(CASE WHEN jsonb_typeof(%(meta)s::jsonb -> 'meters') = 'array'
                               THEN %(meta)s::jsonb -> 'meters' ELSE '[]'::jsonb END) AS m
WHERE jsonb_typeof(m -> 'life') = 'number' AND jsonb_typeof(m -> 'meter') = 'string'
ON CONFLICT (device_id, meter, life) DO UPDATE SET
    serial = COALESCE(EXCLUDED.serial, l.serial), since = COALESCE(EXCLUDED.since, l.since), updated_at = now()
"""
