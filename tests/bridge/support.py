"""What the bridge's integration tests share: running things in threads, fleets spread over buildings,
and reading readings back from Kafka to compare them with the fleet's ledger."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from apt_energy.bridge import Bridge
from apt_energy.config import Household, Settings
from apt_energy.core.contract import exact, parse_ts, usage_month
from apt_energy.edge import Fleet, FleetOptions, Ledger

from tests.kafka_helpers import consume

START = datetime(2024, 3, 1, tzinfo=UTC)

ReadingId = tuple[str, str, int]


class Running:
    """Run something with ``run()``/``stop()`` in a thread."""

    def __init__(self, target: Bridge | Fleet) -> None:
        self.target = target
        self.thread = threading.Thread(target=target.run, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 60) -> None:
        self.target.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "did not finish in time"


def spread(settings: Settings, n: int) -> list[Household]:
    """``n`` households in as many different buildings as possible (the first flats of each in turn)."""
    by_building: dict[int, list[Household]] = {}
    for h in settings.complex.households():
        by_building.setdefault(h.building, []).append(h)
    columns = list(by_building.values())
    out = [col[k] for k in range(max(len(c) for c in columns)) for col in columns if k < len(col)]
    return out[:n]


def fleet_of(settings: Settings, households: Sequence[Household], hours: int, *, speed: float = 0.0,
             ledger: Path | None = None) -> Fleet:
    return Fleet.from_settings(settings, households, FleetOptions(
        start=START, until=START + timedelta(hours=hours), interval_s=3600, speed=speed, ledger_path=ledger,
        drain_timeout_s=120))


def expected_of(settings: Settings, households: Sequence[Household], hours: int) -> set[ReadingId]:
    return {(h.device_id, m, s) for h in households for m in settings.energy for s in range(hours)}


def kafka_readings(settings: Settings, want: int, timeout: float = 90, idle: float = 1.0) -> dict[ReadingId, Any]:
    """Readings in the readings topic (duplicates collapsed), each checked to be keyed by its device."""
    out = {}
    for m in consume(settings, settings.kafka.readings_topic, until=want, timeout=timeout, idle=idle):
        r = json.loads(m.value())
        assert m.key() == r["device_id"].encode()
        out[(r["device_id"], r["meter"], r["seq"])] = r
    return out


def as_ledger(settings: Settings, readings: dict[ReadingId, Any]) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    """What a ledger of exactly these readings would say."""
    out: dict[tuple[str, str, str], tuple[Decimal, int]] = {}
    for r in readings.values():
        key = (r["device_id"], r["meter"], usage_month(parse_ts(r["ts"]), settings.complex.tz).isoformat())
        total, count = out.get(key, (Decimal(0), 0))
        out[key] = (total + exact(r["value"]), count + 1)
    return out


def ledger_count(path: Path) -> int:
    return sum(count for _, count in Ledger.read(path).values())
