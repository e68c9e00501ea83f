"""``apt-energy bills compute|show``: recompute stale bills from energy_usage; print a household's statement."""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
from apt_energy.billing import export, statement, statement_source, store, tariffs
from apt_energy.billing.statement import LANGS
from apt_energy.config import Settings
from apt_energy.config import load as load_settings
from apt_energy.core.cliutil import print_json
from apt_energy.core.table import table
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
    p.add_argument("--json", action="store_true", help="print the result as JSON (show: the statement's lines)")
    p.set_defaults(func=run)
    register_statement(sub)
    register_export(sub)


def register_statement(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("statement", help="write households' monthly statements as printable HTML files",
                       description="One self-contained HTML file per flat (prints on one A4 page): each energy's "
                                   "bill lines, 13 months of usage, the flat against its unit type's average, "
                                   "emissions, the month's projection and completeness. Stale bills are "
                                   "computed first.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--household", metavar="DEVICE_ID", help="household gateway id, e.g. hanbit-01-1203")
    who.add_argument("--all", action="store_true", help="every household of the complex")
    p.add_argument("--month", type=_month, metavar="YYYY-MM", help="billing month (default: the latest billed)")
    p.add_argument("--out", metavar="DIR", help="folder for the HTML files (default: <run dir>/statements)")
    p.add_argument("--lang", choices=LANGS, default="ko", help="ko (default) or en")
    p.set_defaults(func=run_statement)


def tariffs_for(settings: Settings) -> tariffs.Tariffs:
    """The tariffs a complex is billed with (the door: an energy type without a tariff, a tariff without
    an energy type or an unknown kind stops here): its config folder's file, its contract, all its
    energy types."""
    return tariffs.for_energy_table(settings.energy, contract=settings.billing.contract)


def statement_inputs(settings: Settings) -> statement_source.StatementInputs:
    """What the statements read from the settings, and nothing else."""
    return statement_source.StatementInputs(complex=settings.complex, energy=settings.energy,
                                            reading_day=settings.billing.reading_day)


def run_statement(args: argparse.Namespace) -> int:
    settings = load_settings()
    rates = tariffs_for(settings)
    out = Path(args.out) if args.out else settings.run_dir / "statements"
    out.mkdir(parents=True, exist_ok=True)
    with connect(settings) as conn:
        compute(conn, settings, rates, args.month)
        month = args.month
        if month is None:
            row = conn.execute("SELECT max(usage_month) FROM bills").fetchone()
            month = row[0] if row else None
        if month is None:
            print("no bills yet: nothing to state")
            return 1
        found = statement_source.households(conn, None if args.all else args.household)
        if not found:
            print(f"no household {args.household}")
            return 1
        inputs = statement_inputs(settings)
        written = [write_statement(out, statement_source.statement(conn, inputs, h, month), args.lang)
                   for h in found]
    print(f"statements {month:%Y-%m} ({args.lang}): {len(written)} written to {out}"
          + (f" ({written[0].name})" if len(written) == 1 else ""))
    return 0


def write_statement(out: Path, st: statement.Statement, lang: statement.Lang) -> Path:
    """Write one statement's HTML file; its name says whose, which month and which language."""
    path = out / f"{st.device_id}-{st.month:%Y-%m}-{lang}.html"
    path.write_text(statement.render(st, lang), encoding="utf-8")
    return path


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


def compute(conn: psycopg.Connection, settings: Settings, rates: tariffs.Tariffs, month: date | None) -> int:
    """Bring the bills up to date under the complex's billing settings; report months without a tariff."""
    written = store.compute(conn, rates, month=month, contract_areas=contract_areas(settings),
                            reading_day=settings.billing.reading_day, tz=settings.complex.tz)
    missing = store.months_without_tariff(conn, rates)
    if missing:
        print(f"no tariff in force, not billed: {', '.join(store.month_ranges(missing))} "
              "(add a dated entry to config/tariffs.yaml)")
    return written


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    rates = tariffs_for(settings)
    with connect(settings) as conn:
        areas = contract_areas(settings)
        written = compute(conn, settings, rates, args.month)
        if args.action == "compute":
            month = args.month or latest_month(conn)
            n = None
            if month is not None:
                n = store.project(conn, rates, month, tz=settings.complex.tz, model=settings.rules.projection.model,
                                  contract_areas=areas, reading_day=settings.billing.reading_day)
            if args.json:
                print_json({"computed": written, "projected_month": month, "projections": n})
                return 0
            print(f"bills computed: {written}")
            if month is not None:
                print(f"bill projections {month:%Y-%m}: {n}")
            return 0
        if args.action == "summary":
            if args.month is None:
                raise argparse.ArgumentTypeError("summary needs --month")
            if args.json:
                print_json(store.month_summary(conn, args.month))
                return 0
            print("\n".join(store.summary_lines(conn, args.month)))
            return 0
        if not args.household:
            print("apt-energy bills show: --household DEVICE_ID is required", file=sys.stderr)
            return 2
        lines = store.statement(conn, args.household, month=args.month)
        measured = completeness.household(conn, args.household, month=args.month)
    notes = {(c.usage_month, c.meter): completeness.estimated_note(c.expected_s, c.measured_s) for c in measured}
    if args.json:
        print_json({"household": args.household, "lines": lines, "completeness": measured})
        return 0 if lines else 1
    if not lines:
        print(f"no bills for {args.household}", file=sys.stderr)
        return 1
    current: tuple[date, str] | None = None
    rows: list[tuple[str, ...]] = []

    def flush() -> None:
        if rows:
            print("\n".join(table(rows, align="<>^>^>", indent="  ", sep=" ")))
        rows.clear()

    for line in lines:
        if (line.usage_month, line.energy_type) != current:
            flush()
            current = (line.usage_month, line.energy_type)
            tier = f", tier {line.tier}" if line.tier else ""
            print(f"\n{line.usage_month:%Y-%m} {line.energy_type} usage {line.usage:.3f}{tier}: "
                  f"{line.total_krw:,.0f} KRW")
            if note := notes.get(current):   # gaps: billed on what was measured
                print(f"  ({note})")
        rows.append((line.label, f"{line.quantity:.3f}", "×", f"{line.rate:.4f}", "=", f"{line.amount:,.0f}"))
    flush()
    return 0


def _day(text: str) -> date:
    try:
        return date.fromisoformat(f"{text}-01" if len(text) == 7 else text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD or a month YYYY-MM, got {text!r}") from None


def register_export(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("export", help="export usage, bills, alerts or readings as CSV or JSON Lines",
                       description="Streams rows from PostgreSQL (constant memory). Each row has its period's "
                                   "start and end in the complex's time zone and in UTC; the header names units. "
                                   "--from/--to are local dates (YYYY-MM-DD or YYYY-MM), --to exclusive.")
    p.add_argument("kind", choices=export.KINDS)
    p.add_argument("--from", dest="start", type=_day, required=True, metavar="DATE", help="first day (local)")
    p.add_argument("--to", dest="end", type=_day, required=True, metavar="DATE", help="end day, exclusive (local)")
    p.add_argument("--format", choices=export.FORMATS, default="csv", help="csv (default) or jsonl")
    p.add_argument("--household", metavar="DEVICE_ID", help="one household only")
    p.add_argument("--energy", metavar="KEY", help="one energy type only (its unit goes into the header)")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(func=run_export)


def export_options(settings: Settings, args: argparse.Namespace) -> export.Options:
    if args.energy is not None and args.energy not in settings.energy:
        raise argparse.ArgumentTypeError(f"--energy: expected one of {', '.join(settings.energy)}")
    night = settings.rules.night_flow
    return export.Options(start=args.start, end=args.end, tz=settings.complex.tz, household=args.household,
                          reading_day=settings.billing.reading_day,
                          night_hours=(night.night_start_hour, night.night_end_hour),
                          units={k: e.unit for k, e in settings.energy.items()}, energy=args.energy)


def run_export(args: argparse.Namespace) -> int:
    settings = load_settings()
    options = export_options(settings, args)
    with connect(settings) as conn, contextlib.ExitStack() as stack:
        out = stack.enter_context(open(args.out, "w", encoding="utf-8", newline="")) if args.out else sys.stdout
        n = export.write(out, args.format, export.header(args.kind, options), export.rows(conn, args.kind, options))
    print(f"exported {args.kind}: {n} rows" + (f" to {args.out}" if args.out else ""), file=sys.stderr)
    return 0
