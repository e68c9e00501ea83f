"""How much of each household meter's month the database has measured (view ``month_completeness``).

``expected_s`` runs from the later of the local month's start and the household meter's first stored
interval to the earlier of the month's end and the end of the complex's latest reading (migration 0011);
``measured_s`` is the seconds of readings summed into the month. A month that measured less than it
expects is billed on what was measured and marked *estimated*.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import NamedTuple

import psycopg
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

HOUR_S = 3600


class MonthCompleteness(NamedTuple):
    """One row of ``month_completeness`` with the household's gateway id."""

    device_id: str
    meter: str
    usage_month: date
    expected_s: int
    measured_s: int

    @property
    def missing_s(self) -> int:
        return max(0, self.expected_s - self.measured_s)


class ComplexCompleteness(NamedTuple):
    """The complex's measured share of one meter over every month (the demo's summary)."""

    meter: str
    household_months: int
    incomplete: int          # household months with less measured than expected
    expected_s: int
    measured_s: int


def _hours(seconds: int) -> str:
    hours = seconds / HOUR_S
    return f"{hours:.0f}" if seconds % HOUR_S == 0 else f"{hours:.1f}"


def estimated_note(expected_s: int, measured_s: int) -> str | None:
    """``"estimated: 712 of 744 hours measured"`` when a month measured less than it expects, else None."""
    if expected_s <= 0 or measured_s >= expected_s:
        return None
    return f"estimated: {_hours(measured_s)} of {_hours(expected_s)} hours measured"


def household(conn: psycopg.Connection, device_id: str, *, month: date | None = None) -> list[MonthCompleteness]:
    """A household's rows (every month, or one), by month and meter."""
    with conn.cursor(row_factory=class_row(MonthCompleteness)) as cur:
        return cur.execute(
            """SELECT h.device_id, c.meter, c.usage_month, c.expected_s, c.measured_s
               FROM month_completeness c JOIN households h ON h.id = c.household_id
               WHERE h.device_id = %s AND (%s::date IS NULL OR c.usage_month = %s)
               ORDER BY c.usage_month, c.meter""", (device_id, month, month)).fetchall()


def complex_summary(conn: psycopg.Connection) -> list[ComplexCompleteness]:
    """Per meter, the whole complex over every month: how many household months are incomplete."""
    with conn.cursor(row_factory=class_row(ComplexCompleteness)) as cur:
        return cur.execute(
            """SELECT meter, count(*) AS household_months,
                      count(*) FILTER (WHERE measured_s < expected_s) AS incomplete,
                      COALESCE(sum(expected_s), 0)::bigint AS expected_s,
                      COALESCE(sum(LEAST(measured_s, expected_s)), 0)::bigint AS measured_s
               FROM month_completeness GROUP BY meter ORDER BY meter""").fetchall()


def summary_line(c: ComplexCompleteness) -> str:
    """One line of the demo's summary."""
    share = 100.0 * c.measured_s / c.expected_s if c.expected_s else 100.0
    return (f"{c.meter:<12} {share:.2f} % of {c.expected_s / HOUR_S:,.0f} expected hours measured, "
            f"{c.incomplete:,} of {c.household_months:,} household-months incomplete")
