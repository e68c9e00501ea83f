"""The live view of a run: how far each stage has got (published, bridged, stored, alerted), one line."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from apt_energy.config import Settings
from apt_energy.database import connect
from apt_energy.edge.fleet import FleetStats

__all__ = ["Progress", "StatusLine", "pending_notifications", "sample", "status_text"]


@dataclass
class Progress:
    """Counters of one run, refreshed by :func:`sample`."""

    published: int = 0
    bridged: int = 0
    stored: int = 0
    alerts: int = 0
    delivered: int = 0
    quarantined: int = 0
    duplicates: int = 0       # readings of an interval already stored (duplicate_readings): not summed


def sample(settings: Settings, bridge_stats: Path, published: int, p: Progress) -> None:
    """Read the bridge's stats file and the database into ``p``."""
    p.published = published
    try:
        p.bridged = int(json.loads(bridge_stats.read_text())["forwarded"])
    except (OSError, ValueError, KeyError):
        pass  # not written yet, or being replaced: keep the last value
    with connect(settings) as conn:
        row = conn.execute(
            """SELECT (SELECT COALESCE(sum(reading_count), 0) FROM energy_usage),
                      (SELECT count(*) FROM alerts),
                      (SELECT count(*) FROM alert_notifications WHERE state IN ('sent', 'console')),
                      (SELECT count(*) FROM quarantine),
                      (SELECT count(*) FROM duplicate_readings)""").fetchone()
    assert row is not None
    p.stored, p.alerts, p.delivered, p.quarantined = int(row[0]), int(row[1]), int(row[2]), int(row[3])
    p.duplicates = int(row[4])


def pending_notifications(settings: Settings) -> int:
    """Alert notifications not yet delivered (or given up on)."""
    with connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM alert_notifications WHERE state IN ('pending', 'sending')"
                           ).fetchone()
    return int(row[0]) if row else 0


def status_text(stats: FleetStats, p: Progress, elapsed: float, tz: ZoneInfo) -> str:
    lag = max(p.bridged - p.stored, 0)
    return (f"[{elapsed:5.0f}s] sim {stats.sim_time.astimezone(tz):%Y-%m-%d}  online {stats.online}/"
            f"{stats.devices}  published {p.published:,}  bridged {p.bridged:,}  stored {p.stored:,}  "
            f"lag {lag:,}  alerts {p.alerts:,} raised / {p.delivered:,} delivered"
            + (f"  duplicates {p.duplicates:,}" if p.duplicates else ""))


class StatusLine:
    """Refreshed in place on a terminal; a log line every 10 s otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        self.last = 0.0

    def show(self, text: str) -> None:
        if self.tty:
            print("\r" + text[: shutil.get_terminal_size((160, 20)).columns - 1].ljust(10), end="", flush=True)
        elif time.monotonic() - self.last >= 10:
            print(text, flush=True)
            self.last = time.monotonic()

    def done(self) -> None:
        if self.tty:
            print()
