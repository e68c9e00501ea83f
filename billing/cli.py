"""``apt-energy bills compute|show``: recompute stale bills from energy_usage; print a household's statement."""

from __future__ import annotations

import argparse
from datetime import date
from decimal import Decimal

import psycopg
from apt_energy.billing import store, tariffs
from apt_energy.config import Settings
from apt_energy.config import load as load_settings
from apt_energy.database import completeness
from apt_energy.database.connection import connect


def _month(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01" if len(text) == 7 else text).replace(day=1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a month YYYY-MM, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bills", help="compute household bills from monthly usage; show a statement",
                       description="compute: (re)write bills whose usage changed since they were computed. "
                                   "show: compute stale bills, then print a household's statement.")
    p.add_argument("action", choices=["compute", "show", "summary"])
    p.add_argument("--household", metavar="DEVICE_ID", help="household gateway id, e.g. hanbit-01-101 (show)")
    p.add_argument("--month", type=_month, metavar="YYYY-MM", help="one month only")
    p.set_defaults(func=run)


def contract_areas(settings: Settings) -> dict[int, Decimal]:
    """Building number → its flats' contract area (m²) from the complex's unit types."""
    out = {}
    for group in settings.complex.buildings:
        for number in group.numbers:
            unit = settings.complex.unit_type_of(number)
            if unit is not None:
                out[number] = Decimal(str(unit.contract_area_m2))
    return out


def latest_month(conn: psycopg.Connection) -> date | None:
    """The latest month with usage (the one still running, in a live pipeline)."""
    row = conn.execute("SELECT max(usage_date) FROM energy_usage").fetchone()
    return row[0] if row else None


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    rates = tariffs.load()
    with connect(settings) as conn:
        areas = contract_areas(settings)
        written = store.compute(conn, rates, month=args.month, contract_areas=areas)
        if args.action == "compute":
            print(f"bills computed: {written}")
            month = args.month or latest_month(conn)
            if month is not None:
                n = store.project(conn, rates, month, tz=settings.complex.tz, model=settings.rules.projection.model,
                                  contract_areas=areas)
                print(f"bill projections {month:%Y-%m}: {n}")
            return 0
        if args.action == "summary":
            if args.month is None:
                raise argparse.ArgumentTypeError("summary needs --month")
            print("\n".join(store.summary_lines(conn, args.month)))
            return 0
        if not args.household:
            print("apt-energy bills show: --household DEVICE_ID is required")
            return 2
        lines = store.statement(conn, args.household, month=args.month)
        notes = {(c.usage_month, c.meter): completeness.estimated_note(c.expected_s, c.measured_s)
                 for c in completeness.household(conn, args.household, month=args.month)}
    if not lines:
        print(f"no bills for {args.household}")
        return 1
    current: tuple[date, str] | None = None
    for line in lines:
        if (line.usage_month, line.energy_type) != current:
            current = (line.usage_month, line.energy_type)
            tier = f", tier {line.tier}" if line.tier else ""
            print(f"\n{line.usage_month:%Y-%m} {line.energy_type} usage {line.usage:.3f}{tier}: "
                  f"{line.total_krw:,.0f} KRW")
            if note := notes.get(current):   # gaps: billed on what was measured
                print(f"  ({note})")
        print(f"  {line.label:<20} {line.quantity:>12.3f} × {line.rate:>10.4f} = {line.amount:>10,.0f}")
    return 0
