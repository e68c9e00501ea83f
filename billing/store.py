"""The ``bills`` and ``bill_lines`` tables: recompute stale bills from ``energy_usage``, read statements."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

import psycopg
from apt_energy.billing.bill import bill_for
from apt_energy.billing.cycle import cycle_days, cycle_end, cycle_start, next_month
from apt_energy.billing.tariffs import NoTariffInForce, Tariffs
from apt_energy.core.table import table
from apt_energy.rules.projection import forecast_share  # the one projection formula (the alert rule's too)
from psycopg.rows import class_row

logger = logging.getLogger(__name__)


class StaleUsage(NamedTuple):
    household_id: int
    building: int
    energy_type: str
    usage_month: date
    amount_exact: Decimal
    updated_at: datetime


class StatementLine(NamedTuple):
    usage_month: date
    energy_type: str
    usage: Decimal
    tier: int | None
    total_krw: Decimal
    line_no: int
    label: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal


class ProjectionInput(NamedTuple):
    household_id: int
    building: int
    energy_type: str
    so_far: Decimal
    forecast: float
    issued_at: datetime
    latest: datetime | None      # end of the month's latest reading (None: imported, the month is whole)


class MonthSummary(NamedTuple):
    energy_type: str
    households: int
    total_krw: Decimal
    median_krw: Decimal
    p90_krw: Decimal


_STALE = """
SELECT u.household_id, b.building_number AS building, t.key AS energy_type, u.usage_date AS usage_month,
       u.amount_exact, u.updated_at
FROM energy_usage u JOIN energy_types t ON t.label_ko = u.energy_type
JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
LEFT JOIN bills bl ON bl.household_id = u.household_id AND bl.energy_type = t.key AND bl.usage_month = u.usage_date
WHERE (bl.id IS NULL OR bl.usage_updated_at < u.updated_at) AND (%(month)s::date IS NULL OR u.usage_date = %(month)s)
"""


# Billing months cut at a reading day other than the 1st: usage summed from the readings by the cycle
# they fall in (the last instant of a reading's interval, which ends at ts, in local time shifted back
# by reading_day - 1 days, truncated to its month: as contract.usage_month does for calendar months), and imported
# months (monthly totals only, no readings) billed as their calendar month.
_STALE_CYCLES = """
WITH cycles AS (
  SELECT r.household_id, r.meter AS energy_type,
         date_trunc('month', ((r.ts - interval '1 second') AT TIME ZONE %(tz)s)
                             - make_interval(days => %(reading_day)s - 1))::date AS usage_month,
         sum(r.value) AS amount_exact, max(r.ingested_at) AS updated_at
  FROM meter_readings r
  WHERE %(month)s::date IS NULL OR (r.ts > %(start)s AND r.ts <= %(end)s)
  GROUP BY 1, 2, 3
  UNION ALL
  SELECT u.household_id, t.key, u.usage_date, u.amount_exact, u.updated_at
  FROM energy_usage u JOIN energy_types t ON t.label_ko = u.energy_type
  JOIN usage_imports i ON i.household_id = u.household_id AND i.energy_type = t.key AND i.usage_date = u.usage_date
  WHERE %(month)s::date IS NULL OR u.usage_date = %(month)s
)
SELECT c.household_id, b.building_number AS building, c.energy_type, c.usage_month, c.amount_exact, c.updated_at
FROM cycles c JOIN households h ON h.id = c.household_id JOIN buildings b ON b.id = h.building_id
LEFT JOIN bills bl ON bl.household_id = c.household_id AND bl.energy_type = c.energy_type
  AND bl.usage_month = c.usage_month
WHERE (bl.id IS NULL OR bl.usage_updated_at < c.updated_at) AND (%(month)s::date IS NULL OR c.usage_month = %(month)s)
"""


def _stale(conn: psycopg.Connection, month: date | None, reading_day: int, tz: ZoneInfo | None) -> list[StaleUsage]:
    with conn.cursor(row_factory=class_row(StaleUsage)) as cur:
        if reading_day == 1:
            return cur.execute(_STALE, {"month": month}).fetchall()
        if tz is None:
            raise ValueError("a reading day other than the 1st needs the complex's time zone")
        bounds = (cycle_start(month, reading_day, tz), cycle_end(month, reading_day, tz)) if month else (None, None)
        return cur.execute(_STALE_CYCLES, {"month": month, "tz": tz.key, "reading_day": reading_day,
                                           "start": bounds[0], "end": bounds[1]}).fetchall()


# Dropped first: inside a caller, ON COMMIT has not come yet.
_BILLS_IN = """
DROP TABLE IF EXISTS pg_temp.bills_in, pg_temp.bill_lines_in;
CREATE TEMP TABLE bills_in (household_id INTEGER, energy_type TEXT, usage_month DATE, usage NUMERIC,
                            billed_quantity NUMERIC, tier SMALLINT, total_krw NUMERIC, usage_updated_at TIMESTAMPTZ)
    ON COMMIT DROP;
CREATE TEMP TABLE bill_lines_in (household_id INTEGER, energy_type TEXT, usage_month DATE, line_no SMALLINT,
                                 code TEXT, label TEXT, quantity NUMERIC, rate NUMERIC, amount NUMERIC)
    ON COMMIT DROP
"""

_UPSERT_BILLS = """
INSERT INTO bills (household_id, energy_type, usage_month, usage, billed_quantity, tier, total_krw, usage_updated_at,
                   computed_at)
SELECT household_id, energy_type, usage_month, usage, billed_quantity, tier, total_krw, usage_updated_at, now()
FROM bills_in
ON CONFLICT (household_id, energy_type, usage_month) DO UPDATE SET
  usage = EXCLUDED.usage, billed_quantity = EXCLUDED.billed_quantity, tier = EXCLUDED.tier,
  total_krw = EXCLUDED.total_krw, usage_updated_at = EXCLUDED.usage_updated_at, computed_at = now();
DELETE FROM bill_lines l USING bills b, bills_in i
WHERE l.bill_id = b.id AND b.household_id = i.household_id AND b.energy_type = i.energy_type
  AND b.usage_month = i.usage_month;
INSERT INTO bill_lines (bill_id, line_no, code, label, quantity, rate, amount)
SELECT b.id, i.line_no, i.code, i.label, i.quantity, i.rate, i.amount
FROM bill_lines_in i JOIN bills b USING (household_id, energy_type, usage_month)
"""


def compute(conn: psycopg.Connection, tariffs: Tariffs, *, month: date | None = None,
            contract_areas: Mapping[int, Decimal] | None = None, reading_day: int = 1,
            tz: ZoneInfo | None = None) -> int:
    """(Re)compute every bill whose usage is newer than the bill; return how many were written.
    ``contract_areas``: building number → its flats' contract area (m², the heating base charge's
    quantity, from the complex's unit types); buildings not in it use the tariff file's default.
    ``reading_day`` > 1 cuts billing months at that day in ``tz`` (billing/cycle.py)."""
    areas = contract_areas or {}
    stale = _stale(conn, month, reading_day, tz)
    skipped = 0
    bills: list[tuple[object, ...]] = []
    lines: list[tuple[object, ...]] = []
    for row in stale:
        try:
            bill = bill_for(tariffs, row.energy_type, row.usage_month, row.amount_exact,  # type: ignore[arg-type]
                            contract_area_m2=areas.get(row.building))
        except NoTariffInForce:
            skipped += 1   # no tariff in force that month (config starts at its first cited rate)
            continue
        key = (row.household_id, row.energy_type, row.usage_month)
        bills.append((*key, bill.usage, bill.billed, bill.tier, bill.total, row.updated_at))
        lines += [(*key, i, line.code, line.label, line.quantity, line.rate, line.amount)
                  for i, line in enumerate(bill.lines)]
    written = len(bills)
    # Set-based: COPY the statements in, then one upsert and one rewrite of their lines (a year of the
    # complex is ~30k bills and ~300k lines; a round trip per bill took minutes).
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_BILLS_IN)
        with cur.copy("COPY bills_in FROM STDIN") as copy:
            for b in bills:
                copy.write_row(b)
        with cur.copy("COPY bill_lines_in FROM STDIN") as copy:
            for line in lines:
                copy.write_row(line)
        cur.execute(_UPSERT_BILLS)
    logger.debug("bills computed count=%d skipped_no_tariff=%d month=%s", written, skipped, month)
    return written


# Usage so far per household-month with the latest issue of the model's household forecast for it, and
# where the month's latest reading ends (event time).
_PROJECTION_INPUTS = """
SELECT u.household_id, b.building_number AS building, t.key AS energy_type, u.amount_exact AS so_far,
       f.point AS forecast, f.issued_at,
       (SELECT max(r.ts) FROM meter_readings r WHERE r.household_id = u.household_id AND r.meter = t.key
          AND r.usage_month = u.usage_date) AS latest
FROM energy_usage u JOIN energy_types t ON t.label_ko = u.energy_type
JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
JOIN LATERAL (SELECT point, issued_at FROM usage_forecasts f
              WHERE f.level = 'household' AND f.series_id = h.device_id AND f.energy_type = t.key
                AND f.target_month = u.usage_date AND f.model = %(model)s
              ORDER BY f.issued_at DESC LIMIT 1) f ON true
WHERE u.usage_date = %(month)s
"""


# The same for a billing month cut at a reading day: the cycle's readings so far, and the forecast of the
# month it is named by (forecasts are per calendar month; its share of the cycle's days left is used).
_PROJECTION_CYCLE = """
SELECT r.household_id, b.building_number AS building, r.meter AS energy_type, sum(r.value) AS so_far,
       f.point AS forecast, f.issued_at, max(r.ts) AS latest
FROM meter_readings r JOIN households h ON h.id = r.household_id JOIN buildings b ON b.id = h.building_id
JOIN LATERAL (SELECT point, issued_at FROM usage_forecasts f
              WHERE f.level = 'household' AND f.series_id = h.device_id AND f.energy_type = r.meter
                AND f.target_month = %(month)s AND f.model = %(model)s
              ORDER BY f.issued_at DESC LIMIT 1) f ON true
WHERE r.ts > %(start)s AND r.ts <= %(end)s
GROUP BY r.household_id, b.building_number, r.meter, f.point, f.issued_at
"""


def project(conn: psycopg.Connection, tariffs: Tariffs, month: date, *, tz: ZoneInfo, model: str = "ets",
            contract_areas: Mapping[int, Decimal] | None = None, reading_day: int = 1) -> int:
    """Projected bills for ``month``: usage so far + the forecast's share of the days left (as the
    stream job's projection rule computes it), billed; rows written to ``bill_projections``.
    ``reading_day`` > 1: the billing month that starts on that day of ``month``."""
    areas = contract_areas or {}
    start = cycle_start(month, reading_day, tz)
    with conn.cursor(row_factory=class_row(ProjectionInput)) as cur:
        if reading_day == 1:
            found = cur.execute(_PROJECTION_INPUTS, {"model": model, "month": month}).fetchall()
        else:
            found = cur.execute(_PROJECTION_CYCLE, {"model": model, "month": month, "start": start,
                                                    "end": cycle_end(month, reading_day, tz)}).fetchall()
    days = cycle_days(month, reading_day)
    rows = []
    for r in found:
        elapsed = days if r.latest is None else min(max((r.latest - start).total_seconds() / 86400, 0.0), days)
        projected = r.so_far + Decimal(str(round(forecast_share(r.forecast, days_elapsed=elapsed, days_in_month=days),
                                                 6)))
        try:
            bill = bill_for(tariffs, r.energy_type, month, projected,  # type: ignore[arg-type]
                            contract_area_m2=areas.get(r.building))
        except NoTariffInForce:
            continue
        rows.append((r.household_id, r.energy_type, month, r.so_far, elapsed, r.forecast, model, r.issued_at,
                     projected, bill.tier, bill.total))
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("DELETE FROM bill_projections WHERE usage_month = %s", (month,))
        cur.executemany(
            "INSERT INTO bill_projections (household_id, energy_type, usage_month, so_far, days_elapsed, forecast, "
            "model, forecast_issued_at, projected, tier, total_krw) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", rows)
    logger.debug("bill projections month=%s count=%d", month, len(rows))
    return len(rows)


def statement(conn: psycopg.Connection, device_id: str, *, month: date | None = None) -> list[StatementLine]:
    """A household's bill lines (every month, or one), ordered by month, energy type, line."""
    with conn.cursor(row_factory=class_row(StatementLine)) as cur:
        return cur.execute(
            """SELECT b.usage_month, b.energy_type, b.usage, b.tier, b.total_krw, l.line_no, l.label, l.quantity,
                      l.rate, l.amount
               FROM bills b JOIN households h ON h.id = b.household_id JOIN bill_lines l ON l.bill_id = b.id
               WHERE h.device_id = %s AND (%s::date IS NULL OR b.usage_month = %s)
               ORDER BY b.usage_month, b.energy_type, l.line_no""", (device_id, month, month)).fetchall()


def month_summary(conn: psycopg.Connection, month: date) -> list[MonthSummary]:
    """Per energy type: households billed, the complex's total, median and 90th percentile (KRW)."""
    with conn.cursor(row_factory=class_row(MonthSummary)) as cur:
        return cur.execute(
            """SELECT energy_type, count(*)::int AS households, sum(total_krw) AS total_krw,
                      percentile_disc(0.5) WITHIN GROUP (ORDER BY total_krw) AS median_krw,
                      percentile_disc(0.9) WITHIN GROUP (ORDER BY total_krw) AS p90_krw
               FROM bills WHERE usage_month = %s GROUP BY energy_type ORDER BY energy_type""", (month,)).fetchall()


def summary_lines(conn: psycopg.Connection, month: date) -> list[str]:
    """Lines for the demo's summary: bills per energy type for ``month`` (run :func:`compute` first)."""
    return table([(f"bills {month:%Y-%m}", s.energy_type, f"{s.households} households,",
                   f"total {s.total_krw:,.0f} KRW,", f"median {s.median_krw:,.0f},", f"p90 {s.p90_krw:,.0f}")
                  for s in month_summary(conn, month)], sep=" ")


def months_without_tariff(conn: psycopg.Connection, tariffs: Tariffs) -> list[tuple[str, date]]:
    """(energy type, month) of the usage no tariff covers: the months bills are missing for."""
    found = conn.execute("""SELECT DISTINCT t.key, u.usage_date FROM energy_usage u
                            JOIN energy_types t ON t.label_ko = u.energy_type ORDER BY 1, 2""").fetchall()
    return [(key, month) for key, month in found if not has_tariff(tariffs, key, month)]


def has_tariff(tariffs: Tariffs, energy_type: str, month: date) -> bool:
    """Whether a rate of ``energy_type`` is in force in ``month``."""
    try:
        bill_for(tariffs, energy_type, month, Decimal(0))
    except NoTariffInForce:
        return False
    return True


def month_ranges(months: list[tuple[str, date]]) -> list[str]:
    """``electricity 2023-01..2023-04`` per run of consecutive months, for a one-line report."""
    out: list[tuple[str, date, date]] = []
    for key, month in sorted(months):
        if out and out[-1][0] == key and next_month(out[-1][2]) == month:
            out[-1] = (key, out[-1][1], month)
        else:
            out.append((key, month, month))
    return [f"{k} {a:%Y-%m}" + (f"..{b:%Y-%m}" if b != a else "") for k, a, b in out]
