"""The demo's report: usage and emissions per building, alerts per rule, the truth check, next steps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from apt_energy.app.progress import Progress
from apt_energy.app.truth import TruthResult
from apt_energy.config import EnergyType, Settings
from apt_energy.core.table import table
from apt_energy.database import completeness, connect
from apt_energy.rules import Registry
from apt_energy.rules import registry as rule_registry

__all__ = ["next_steps", "rule_rows", "summary", "usage_rows"]


def summary(settings: Settings, truth: TruthResult, p: Progress, timings: dict[str, float], generated: int) -> bool:
    """Print usage and emissions per building, alerts per rule, and the truth check; True if it holds."""
    energy = settings.energy
    with connect(settings) as conn:
        per_building = conn.execute(
            """SELECT b.building_number, et.key, sum(u.amount_exact), sum(u.emission), count(DISTINCT u.household_id)
               FROM energy_usage u JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
               JOIN energy_types et ON et.label_ko = u.energy_type GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
        peaks = dict(((b, k), m) for b, k, m in conn.execute(
            """SELECT DISTINCT ON (b.building_number, et.key) b.building_number, et.key, u.usage_date
               FROM energy_usage u JOIN households h ON h.id = u.household_id JOIN buildings b ON b.id = h.building_id
               JOIN energy_types et ON et.label_ko = u.energy_type
               GROUP BY 1, 2, 3 ORDER BY 1, 2, sum(u.amount_exact) DESC""").fetchall())
        by_rule = conn.execute("SELECT rule, energy_type, count(*), count(*) FILTER (WHERE state = 'resolved') "
                               "FROM alerts GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
        # every household is metered for every energy type of the table: its household-months are the
        # distinct (household, month) pairs, whichever types the table has
        household_months = conn.execute(
            "SELECT count(DISTINCT (household_id, usage_date)) FROM energy_usage").fetchone()
        examples = conn.execute(
            """SELECT rule, b.building_number, h.floor * 100 + h.unit, a.energy_type, a.period, a.observed,
                      a.reference, a.unit FROM (
                 SELECT *, row_number() OVER (PARTITION BY rule ORDER BY id) AS n FROM alerts) a
               JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
               WHERE a.n <= 3 ORDER BY rule, a.n""").fetchall()
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
        duplicates = conn.execute("SELECT count(*) FROM duplicate_readings").fetchone()
        complete = completeness.complex_summary(conn)
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()

    print("\nYearly usage and emissions per building")
    rows = usage_rows(energy, per_building, peaks)
    print("\n".join(table(rows, headers=("building", "energy", "usage", "emissions", "peak month", "households"),
                          align="><>><>")))

    months = int(household_months[0]) if household_months else 0
    print(f"\nAlerts by rule and energy type ({months:,} household-months per energy type)")
    registry = rule_registry.current()
    print("\n".join(table(rule_rows(by_rule, months, registry), align="<<><", indent="  ")))
    example_rows = [(f"e.g. {rule}", f"{building}동 {door}호", key, period, f"{observed:,.2f} vs {reference:,.2f}",
                     registry.unit_of(rule, unit))
                    for rule, building, door, key, period, observed, reference, unit in examples]
    print("\n".join(table(example_rows, align="<><<><", indent="    ")))

    differ, unknown = truth.differ, truth.unknown
    count = truth.readings
    wall = timings.get("stored", 0.0)
    print(f"\nTruth check: {len(truth.ledger):,} household × meter × month totals from the ledger ({count:,} readings)")
    if truth.ok:
        print("  ✓ PostgreSQL equals the simulator's ledger exactly, to the last reading")
    else:
        print(f"  ✗ {len(differ)} totals differ and {len(unknown)} are not in the ledger, e.g.:")
        for k, (want, got) in list(differ.items())[:5]:
            print(f"    {k}: ledger {tuple(want)}, database {tuple(got) if got else None}")
    print(f"  generated {generated:,} readings, published {p.published:,}, stored {p.stored:,}, quarantined "
          f"{quarantined[0] if quarantined else 0}, device status rows {devices[0] if devices else 0}")
    dup = duplicates[0] if duplicates else 0
    print(f"  duplicate readings (an interval already stored under another seq or life) {dup}")
    if wall:
        print(f"  wall time {wall:.0f} s (edge done at {timings.get('published', 0):.0f} s), "
              f"{count / wall:,.0f} readings/s end to end")
    print("\nCompleteness (seconds measured of those expected, per household × meter × month)")
    for c in complete:
        print(f"  {completeness.summary_line(c)}")
    return truth.ok


def usage_rows(energy: Mapping[str, EnergyType], per_building: Iterable[tuple[int, str, Decimal, float, int]],
               peaks: Mapping[tuple[int, str], date]) -> list[tuple[object, ...]]:
    """The usage table's rows: each building × energy type of the table (usage in its unit, emissions,
    peak month, households), then the complex's total per energy type."""
    rows: list[tuple[object, ...]] = []
    totals: dict[str, tuple[Decimal, float]] = {}
    for building, key, amount, emission, n in per_building:
        e = energy[key]
        rows.append((building, f"{e.label_ko} {e.label_en}", f"{float(amount):,.1f} {e.unit}",
                     f"{emission / 1000:,.2f} t CO2e", f"{peaks[(building, key)]:%Y-%m}", n))
        so_far = totals.get(key, (Decimal(0), 0.0))
        totals[key] = (so_far[0] + Decimal(amount), so_far[1] + float(emission))
    for key, (total, co2) in totals.items():
        e = energy[key]
        rows.append(("all", f"{e.label_ko} {e.label_en}", f"{float(total):,.1f} {e.unit}", f"{co2 / 1000:,.2f} t CO2e",
                     "", ""))
    return rows


def rule_rows(by_rule: list[tuple[str, str, int, int]], months: int, registry: Registry) -> list[tuple[object, ...]]:
    """One row per (alert name, energy type) that raised alerts, and one per registered rule that raised
    none (with its description), so a rule that never fired is seen too."""
    rows: list[tuple[object, ...]] = []
    for rule, key, n, resolved in by_rule:
        rate = 100 * n / months if months else 0.0
        extra = f", {resolved} resolved" if resolved else ""
        rows.append((rule, key, n, f"({rate:.2f} % of household-months{extra})"))
    fired = {rule for rule, *_ in by_rule}
    rows += [(r.key, "-", 0, f"(none: {r.description})") for r in registry if not fired & set(r.names)]
    return rows


def next_steps(settings: Settings, demo_dir: Path, keep_running: bool, start: datetime, until: datetime, *,
               slack: bool = True) -> None:
    """Where to look at the run's result: SQL, MQTT, Grafana, where the alerts went; how to stop."""
    from apt_energy.alerts import destination

    pg = settings.postgres
    alerts = destination(settings) if slack else "not delivered (--slack off): they wait in alert_notifications"
    tz = settings.complex.tz
    mq = settings.mqtt
    scheme = "mqtts" if mq.tls else "mqtt"
    ca = f", server CA {settings.mqtt_ca_file}" if settings.mqtt.tls else ""
    stop = f"the services are still running: `apt-energy pipeline down --dir {demo_dir}`; " if keep_running else ""
    print(f"""
Where to look next
  SQL:   psql "host={pg.host} port={pg.port} dbname={pg.database} user={pg.writer_user}"   (password in .env)
         SELECT * FROM energy_usage ORDER BY usage_date, household_id LIMIT 20;
  MQTT:  MQTT Explorer → {scheme}://{mq.host}:{mq.port}, topic '{mq.topic_prefix}/#'{ca}
         user {mq.operator_user}, password APT_ENERGY_MQTT_OPERATOR_PASSWORD in .env (README "MQTT Explorer");
         run `apt-energy edge --households 40 --speed 3600` for live traffic
  Grafana: the dashboards' queries over this run (as Grafana's read-only role):
         apt-energy dashboards check --from {start.astimezone(tz):%Y-%m-%d} --to {until.astimezone(tz):%Y-%m-%d}
         (docker compose serves them at http://localhost:3000; see README "What you see")
  Alerts: {alerts}
         notifier log {demo_dir / 'notifier.log'}; list them with their delivery state: `apt-energy alerts`
  Stop:  {stop}`apt-energy stack down`""")

