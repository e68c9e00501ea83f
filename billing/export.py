"""Exports people take with them: monthly usage, bills, alerts and meter readings as CSV or JSON Lines.

Streamed: rows come from a server-side cursor in batches and are written as they arrive, so memory stays
flat however many readings the complex has. Every row carries its period's start and end, in the complex's
time zone and in UTC (ISO 8601); the header names each quantity's unit (``total (KRW)``; with mixed
energy types a ``unit`` column says the amount's).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal, TextIO
from zoneinfo import ZoneInfo

import psycopg
from apt_energy.billing.cycle import cycle_end, cycle_start, next_month

logger = logging.getLogger(__name__)

Kind = Literal["usage", "bills", "alerts", "readings"]
KINDS: tuple[Kind, ...] = ("usage", "bills", "alerts", "readings")
Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
BATCH = 5000

TIME_COLUMNS = ("period_start_local", "period_end_local", "period_start_utc", "period_end_utc")


@dataclass(frozen=True)
class Options:
    """What to export: local dates ``[start, end)``, one household or all. Monthly rows (usage, bills,
    alerts) count by the month their period starts in; a reading by its interval's last instant (its
    ``ts`` is the interval's end), as the monthly totals count it."""

    start: date
    end: date
    tz: ZoneInfo
    household: str | None = None
    reading_day: int = 1                 # bills' billing months (settings.billing.reading_day)
    night_hours: tuple[int, int] = (0, 6)   # night_flow alerts' period: [start, end) hours of the night
    units: dict[str, str] | None = None  # energy key → unit, for the header when one energy type is exported
    energy: str | None = None


@dataclass(frozen=True)
class Query:
    sql: str
    columns: tuple[str, ...]           # the header, after the four time columns' position
    period: Callable[[tuple[Any, ...]], tuple[datetime, datetime]]
    drop: int                          # leading SQL columns used for the period only


def _month_period(tz: ZoneInfo) -> Callable[[tuple[Any, ...]], tuple[datetime, datetime]]:
    return lambda r: (datetime.combine(r[0], time(), tz), datetime.combine(next_month(r[0]), time(), tz))


def _amount(options: Options, name: str = "amount") -> str:
    unit = (options.units or {}).get(options.energy or "")
    return f"{name} ({unit})" if unit else name


def query(kind: Kind, options: Options) -> Query:
    """The SQL and header of one export kind (rows filtered by ``options``, ordered for reading)."""
    tz = options.tz
    where = "h.device_id = %(household)s OR %(household)s::text IS NULL"
    if kind == "usage":
        return Query(f"""
            SELECT u.usage_date, h.device_id, b.building_number, h.floor * 100 + h.unit, t.key, u.amount_exact,
                   t.unit, u.emission, u.reading_count, u.covered_s
            FROM energy_usage u JOIN energy_types t ON t.label_ko = u.energy_type
            JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
            WHERE u.usage_date >= %(first_month)s AND u.usage_date < %(end)s AND ({where})
              AND (t.key = %(energy)s OR %(energy)s::text IS NULL)
            ORDER BY u.usage_date, b.building_number, h.floor, h.unit, t.key""",
                     ("household", "building", "door", "energy_type", _amount(options), "unit", "emission (kg CO2e)",
                      "readings", "covered (s)"), _month_period(tz), 1)
    if kind == "bills":
        day = options.reading_day
        return Query(f"""
            SELECT bl.usage_month, h.device_id, b.building_number, h.floor * 100 + h.unit, bl.energy_type, bl.usage,
                   t.unit, bl.billed_quantity, bl.tier, bl.total_krw, bl.computed_at
            FROM bills bl JOIN energy_types t ON t.key = bl.energy_type
            JOIN households h ON h.id = bl.household_id JOIN buildings b ON b.id = h.building_id
            WHERE bl.usage_month >= %(first_month)s AND bl.usage_month < %(end)s AND ({where})
              AND (t.key = %(energy)s OR %(energy)s::text IS NULL)
            ORDER BY bl.usage_month, b.building_number, h.floor, h.unit, bl.energy_type""",
                     ("household", "building", "door", "energy_type", _amount(options, "usage"), "unit",
                      "billed_quantity", "tier", "total (KRW)", "computed_at_utc"),
                     lambda r: (cycle_start(r[0], day, tz), cycle_end(r[0], day, tz)), 1)
    if kind == "alerts":
        start_h, end_h = options.night_hours

        def alert_period(r: tuple[Any, ...]) -> tuple[datetime, datetime]:
            period, rule = r[0], r[1]
            if rule == "night_flow":
                night = datetime.combine(period, time(), tz)
                return night + timedelta(hours=start_h), night + timedelta(hours=end_h)
            return _month_period(tz)((period,))

        return Query(f"""
            SELECT a.period, a.rule, a.id, h.device_id, b.building_number, h.floor * 100 + h.unit, a.energy_type,
                   a.rule, a.severity, a.observed, a.reference, a.unit, a.state, a.raised_at, a.resolved_at
            FROM alerts a JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
            WHERE a.period >= %(first_month)s AND a.period < %(end)s AND ({where})
              AND (a.energy_type = %(energy)s OR %(energy)s::text IS NULL)
            ORDER BY a.period, a.id""",
                     ("alert_id", "household", "building", "door", "energy_type", "rule", "severity",
                      _amount(options, "observed"), _amount(options, "reference"), "unit", "state", "raised_at_utc",
                      "resolved_at_utc"), alert_period, 2)
    return Query(f"""
        SELECT r.ts, r.interval_s, h.device_id, b.building_number, h.floor * 100 + h.unit, r.meter, r.seq, r.value,
               t.unit, r.total, r.interval_s
        FROM meter_readings r JOIN energy_types t ON t.key = r.meter
        JOIN households h ON h.id = r.household_id JOIN buildings b ON b.id = h.building_id
        WHERE r.ts > %(start_ts)s AND r.ts <= %(end_ts)s AND ({where})
          AND (r.meter = %(energy)s OR %(energy)s::text IS NULL)
        ORDER BY r.ts, r.device_id, r.meter, r.seq""",
                 ("household", "building", "door", "meter", "seq", _amount(options, "value"), "unit",
                  _amount(options, "total"), "interval (s)"),
                 lambda r: (r[0] - timedelta(seconds=r[1]), r[0]), 2)


def params(options: Options) -> dict[str, object]:
    first_month = options.start.replace(day=1) if options.start.day == 1 else next_month(options.start)
    return {"household": options.household, "energy": options.energy, "end": options.end,
            "first_month": first_month,
            "start_ts": datetime.combine(options.start, time(), options.tz),
            "end_ts": datetime.combine(options.end, time(), options.tz)}


def rows(conn: psycopg.Connection, kind: Kind, options: Options) -> Iterator[tuple[object, ...]]:
    """The export's rows, time columns first, streamed from a server-side cursor (constant memory)."""
    q = query(kind, options)
    # A named cursor lives in a transaction; it is the server that holds the result, BATCH rows at a time.
    with conn.transaction(), conn.cursor(name=f"export_{kind}") as cur:
        cur.itersize = BATCH
        cur.execute(q.sql, params(options))
        for r in cur:
            start, end = q.period(r)
            yield (_iso(start.astimezone(options.tz)), _iso(end.astimezone(options.tz)), _iso(start.astimezone(UTC)),
                   _iso(end.astimezone(UTC)), *(_iso(v) if isinstance(v, datetime) else v for v in r[q.drop:]))


def header(kind: Kind, options: Options) -> tuple[str, ...]:
    return (*TIME_COLUMNS, *query(kind, options).columns)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def write(out: TextIO, fmt: Format, columns: Sequence[str], records: Iterator[tuple[object, ...]]) -> int:
    """Write ``records`` under ``columns``; return how many. JSON numbers keep the database's exact digits."""
    n = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for r in records:
            writer.writerow("" if v is None else v for v in r)
            n += 1
        return n
    keys = [json.dumps(c, ensure_ascii=False) for c in columns]
    for r in records:
        out.write("{" + ",".join(f"{k}:{_json(v)}" for k, v in zip(keys, r, strict=True)) + "}\n")
        n += 1
    return n


def _json(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)
