"""``apt-energy dashboards build|check``: regenerate the Grafana JSON; run every panel's SQL."""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta

from apt_energy.billing.cli import tariffs_for
from apt_energy.core.cliutil import in_zone, local_date
from apt_energy.dashboards import health
from apt_energy.dashboards.build import JSON_DIR, stale, write
from apt_energy.dashboards.check import run_panels
from apt_energy.dashboards.definitions import DashboardInputs, all_dashboards
from apt_energy.dashboards.macros import TimeRange
from apt_energy.database import connect
from apt_energy.stack.mosquitto import MAX_QUEUED_MESSAGES

from apt_energy import billing, config


def variable(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, e.g. building=3, got {text!r}")
    return name, value


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "dashboards", help="regenerate the Grafana dashboards; run their queries against PostgreSQL",
        description=f"build: write {JSON_DIR} from config (complex.yaml's energy types, units and thresholds). "
                    "check: expand every panel's SQL as Grafana does and run it as the read-only role "
                    "(APT_ENERGY_DB_READER_PASSWORD), reporting panels that would be empty or undrawable.")
    p.add_argument("action", choices=["build", "check"])
    p.add_argument("--from", dest="start", type=local_date, default=None,
                   help="check: time range start, a date in the complex's time zone (default: a year ago)")
    p.add_argument("--to", dest="end", type=local_date, default=None, help="check: time range end (default: now)")
    p.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", type=variable,
                   help="check: a variable's value, e.g. --var building=3 (default: its first value)")
    p.set_defaults(func=run)


def dashboard_inputs(settings: config.Settings) -> DashboardInputs:
    """What the dashboards are built from (the door: settings + tariffs become narrow inputs)."""
    return DashboardInputs(complex=settings.complex, energy=settings.energy, thresholds=settings.rules.thresholds,
                           tiered=tariffs_for(settings).keys_of(billing.ProgressiveTariff))


def run(args: argparse.Namespace) -> int:
    settings = config.load()
    inputs = dashboard_inputs(settings)
    if args.action == "build":
        written = write(inputs)
        print(f"{len(written)} dashboard file(s) updated in {JSON_DIR}" if written else "dashboards up to date")
        monitoring = health.write(settings.metrics, max_queued_messages=MAX_QUEUED_MESSAGES)
        print(f"{len(monitoring)} monitoring file(s) updated (pipeline health, Prometheus)" if monitoring
              else "monitoring files up to date")
        return 0
    tz = settings.complex.tz
    end = in_zone(args.end, tz) if args.end else datetime.now(tz)
    start = in_zone(args.start, tz) if args.start else end - timedelta(days=365)
    chosen = dict(args.var)
    failures = 0
    outdated = stale(inputs)
    if outdated:
        print(f"note: {', '.join(outdated)} differ from config; run `apt-energy dashboards build`")
    with connect(settings, role="reader") as conn:
        for dashboard in all_dashboards(inputs):
            for result in run_panels(conn, dashboard.to_json(), TimeRange(start, end), chosen=chosen):
                mark = "ok " if not result.problems else "BAD"
                failures += bool(result.problems)
                print(f"{mark} {result.dashboard:<22} {result.panel[:60]:<60} {len(result.rows):>5} rows"
                      + (f"  ({'; '.join(result.problems)})" if result.problems else ""))
    if failures:
        print(f"{failures} panel(s) would be empty or undrawable for {start.astimezone(tz):%Y-%m-%d} .. "
              f"{end.astimezone(tz):%Y-%m-%d}; empty ones usually mean no data in that range (the demo simulates "
              "2024: --from 2024-01-01 --to 2024-12-31)")
    return 1 if failures else 0
