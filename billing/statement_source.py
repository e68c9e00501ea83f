"""The figures of a household's monthly statement, read from PostgreSQL: its bills and their lines, 13
months of usage, the average of the flats of its unit type, its projection and the month's completeness.

Completeness comes from the view ``month_completeness`` (:mod:`apt_energy.database.completeness`, the
same figures as the bills' "estimated" note); a month with no metered interval (imported history) says
"completeness unknown".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import NamedTuple

import psycopg
from apt_energy.billing.cycle import cycle_end, cycle_start
from apt_energy.billing.statement import EnergyPart, Line, Projection, Statement
from apt_energy.config import ComplexSettings, EnergyType
from apt_energy.database import completeness as database_completeness
from psycopg.rows import class_row

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StatementInputs:
    """What a statement reads from the configuration: the complex (name, buildings, unit types, time
    zone), its energy table (labels, units, decimals, emission factors) and the billing month's reading
    day. Built at the CLI door from the settings (billing/cli.py)."""

    complex: ComplexSettings
    energy: Mapping[str, EnergyType]
    reading_day: int = 1


class HouseholdRow(NamedTuple):
    id: int
    device_id: str
    building: int
    door: int


class BillRow(NamedTuple):
    energy_type: str
    usage: Decimal
    tier: int | None
    total_krw: Decimal


class LineRow(NamedTuple):
    energy_type: str
    code: str
    label: str
    quantity: Decimal
    rate: Decimal
    amount: Decimal


def months_back(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 - n
    return date(index // 12, index % 12 + 1, 1)


def households(conn: psycopg.Connection, device_id: str | None = None) -> list[HouseholdRow]:
    """One household (``device_id``) or every household of the complex, by building, floor, unit."""
    with conn.cursor(row_factory=class_row(HouseholdRow)) as cur:
        return cur.execute(
            """SELECT h.id, h.device_id, b.building_number AS building, h.floor * 100 + h.unit AS door
               FROM households h JOIN buildings b ON b.id = h.building_id
               WHERE %(d)s::text IS NULL OR h.device_id = %(d)s
               ORDER BY b.building_number, h.floor, h.unit""", {"d": device_id}).fetchall()


def statement(conn: psycopg.Connection, inputs: StatementInputs, household: HouseholdRow, month: date
              ) -> Statement:
    """Everything one statement shows, for ``household`` and the billing month ``month``."""
    hid = household.id
    with conn.cursor(row_factory=class_row(BillRow)) as cur:
        bills = {b.energy_type: b for b in cur.execute(
            "SELECT energy_type, usage, tier, total_krw FROM bills WHERE household_id = %s AND usage_month = %s",
            (hid, month)).fetchall()}
    with conn.cursor(row_factory=class_row(LineRow)) as cur:
        line_rows = cur.execute(
            """SELECT b.energy_type, l.code, l.label, l.quantity, l.rate, l.amount
               FROM bills b JOIN bill_lines l ON l.bill_id = b.id
               WHERE b.household_id = %s AND b.usage_month = %s ORDER BY b.energy_type, l.line_no""",
            (hid, month)).fetchall()
    first = months_back(month, 12)
    # A month without a bill (no tariff in force) still shows its metered usage.
    history: dict[tuple[str, date], Decimal | None] = {
        (k, m): u for k, m, u in conn.execute(
            """SELECT t.key, m::date, coalesce(b.usage, u.amount_exact)
               FROM generate_series(%(first)s::date, %(month)s::date, interval '1 month') m CROSS JOIN energy_types t
               LEFT JOIN bills b ON b.household_id = %(h)s AND b.energy_type = t.key AND b.usage_month = m::date
               LEFT JOIN energy_usage u ON u.household_id = %(h)s AND u.energy_type = t.label_ko
                                       AND u.usage_date = m::date""",
            {"first": first, "month": month, "h": hid}).fetchall()}
    cx = inputs.complex
    unit_type_key, unit_type = _unit_type(cx, household.building)
    same = [n for g in cx.buildings for n in g.numbers if (g.unit_type or cx.default_unit_type) == unit_type_key]
    peers = {k: (avg, n) for k, avg, n in conn.execute(
        """SELECT b.energy_type, avg(b.usage), count(*) FROM bills b
           JOIN households h ON h.id = b.household_id JOIN buildings bd ON bd.id = h.building_id
           WHERE b.usage_month = %s AND bd.building_number = ANY(%s) GROUP BY 1""", (month, same)).fetchall()}
    projections = {k: Projection(p, t, d) for k, p, t, d in conn.execute(
        """SELECT energy_type, projected, total_krw, days_elapsed FROM bill_projections
           WHERE household_id = %s AND usage_month = %s""", (hid, month)).fetchall()}
    completeness = {c.meter: min(c.measured_s / c.expected_s, 1.0) if c.expected_s else 1.0
                    for c in database_completeness.household(conn, household.device_id, month=month)}
    parts = energy_parts(inputs.energy, month, bills=bills, lines=line_rows, history=history, peers=peers,
                         projections=projections, completeness=completeness)
    tz, day = cx.tz, inputs.reading_day
    period = (cycle_start(month, day, tz).date(), cycle_end(month, day, tz).date() - timedelta(days=1))
    return Statement(complex_name=cx.name, device_id=household.device_id, building=household.building,
                     door=household.door, unit_type=unit_type, month=month, period=period, parts=parts,
                     completeness_known=bool(completeness))


def energy_parts(energy: Mapping[str, EnergyType], month: date, *, bills: Mapping[str, BillRow],
                 lines: Iterable[LineRow], history: Mapping[tuple[str, date], Decimal | None],
                 peers: Mapping[str, tuple[Decimal, int]], projections: Mapping[str, Projection],
                 completeness: Mapping[str, float]) -> tuple[EnergyPart, ...]:
    """One part per energy type of the table, in its order (pure: the figures come from :func:`statement`).
    An energy type is listed whether or not it has a bill that month."""
    first = months_back(month, 12)
    rows = list(lines)
    parts = []
    for key, e in energy.items():
        bill = bills.get(key)
        parts.append(EnergyPart(
            key=key, label_ko=e.label_ko, label_en=e.label_en, unit=e.unit, decimals=e.decimals,
            usage=bill.usage if bill else history.get((key, month)), tier=bill.tier if bill else None,
            total_krw=bill.total_krw if bill else None,
            lines=tuple(Line(r.code, r.label, r.quantity, r.rate, r.amount) for r in rows if r.energy_type == key),
            history=tuple((m, history.get((key, m))) for m in _months(first, month)),
            peer_average=peers[key][0] if key in peers else None, peers=int(peers[key][1]) if key in peers else 0,
            emission_factor=Decimal(str(e.emission_factor.value)), projection=projections.get(key),
            completeness=completeness.get(key)))
    return tuple(parts)


def _months(first: date, last: date) -> Iterator[date]:
    month = first
    while month <= last:
        yield month
        month = months_back(month, -1)


def _unit_type(cx: ComplexSettings, building: int) -> tuple[str, str]:
    """(key, label) of a building's unit type; the label is what a resident reads (e.g. 84㎡ (34평형))."""
    for group in cx.buildings:
        if building in group.numbers:
            key = group.unit_type or cx.default_unit_type
            unit = cx.unit_types.get(key)
            return key, (unit.label if unit and unit.label else key)
    return "", ""
