"""``apt-energy demo``: the whole complex end to end, with a live status line and a checked summary.

Brings the native stack up, resets the pipeline's data (topics, tables, checkpoints) so the result is
reproducible, starts the Spark job, the bridge and the notifier under the pipeline supervisor
(:mod:`apt_energy.app.pipeline`) and the edge fleet in this process, waits until every published reading
is stored, then prints a summary per building and energy type, the alerts, and a truth check of the
database against the simulator's ledger (:mod:`apt_energy.app.truth`).

Forecasts and bills around the stream: before it, the complex's past (36 simulated months, the same
consumption model) is forecast for the streamed months, so the projection rule can warn during the
year; after the truth check (which compares streamed readings only) that past is imported into
``energy_usage``, next month is forecast from past + streamed year, and the year is billed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import threading
import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

from apt_energy.app import pipeline
from apt_energy.app.bad_input import publish_bad_input
from apt_energy.app.pipeline import PipelineOptions
from apt_energy.app.progress import Progress, StatusLine, pending_notifications, sample, status_text
from apt_energy.app.report import next_steps, summary
from apt_energy.app.reset import PIPELINE_TABLES, reset_pipeline
from apt_energy.app.truth import check, read_ledger
from apt_energy.config import Settings
from apt_energy.core.cliutil import add_env_flag, add_months, duration, in_zone, local_date, on_stop_signals
from apt_energy.core.errors import CheckFailed, ServiceError
from apt_energy.database import connect
from apt_energy.stack.native import NativeStack
from apt_energy.stack.secrets import ensure_dotenv

from apt_energy import config

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 600
DELIVERY_TIMEOUT_S = 60
HISTORY_MONTHS = 36           # the seasonal models want ≥ 24 months per series
FORECAST_TABLES = ("bill_lines", "bills", "usage_imports", "usage_forecasts")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="run the whole complex end to end and check the result",
        description="Stack up → reset pipeline data → Spark job + bridge + edge fleet → drain → summary and a "
                    "truth check of PostgreSQL against the simulator's ledger (exit 1 if they differ).")
    add_env_flag(p, "--households", "APT_ENERGY_DEMO_HOUSEHOLDS", default=840, type=int, help="households to simulate")
    add_env_flag(p, "--months", "APT_ENERGY_DEMO_MONTHS", default=12, type=int, help="simulated months")
    add_env_flag(p, "--start", "APT_ENERGY_DEMO_START", default=local_date("2024-01-01"), type=local_date,
                 help="simulated start, a date in the complex's time zone")
    add_env_flag(p, "--interval", "APT_ENERGY_DEMO_INTERVAL", default=12 * 3600, type=duration,
                 help="meter reporting interval; 12h (840 households × 12 months = 1.84M readings) is the finest "
                      "that keeps the demo within 5 minutes on 2 cores (~3.5). The leak rule needs ≤ 6h to see "
                      "nights: try --interval 6h (3.7M readings, ~7 minutes) or fewer --months or --households")
    add_env_flag(p, "--speed", "APT_ENERGY_DEMO_SPEED", default=0.0, type=float,
                 help="simulated seconds per real second; 0 = as fast as the pipeline takes it")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the Spark job, bridge and notifier running afterwards under their supervisor "
                        "(for Grafana / MQTT Explorer; stop them with `apt-energy pipeline down --dir <output>`)")
    p.add_argument("--slack", choices=["on", "off"], default="on",
                   help="deliver alerts (Slack if SLACK_BOT_TOKEN/SLACK_WEBHOOK_URL is set, else console log)")
    p.add_argument("--stack-down", action="store_true", help="stop the native stack at the end")
    p.add_argument("--no-bad-input", dest="bad_input", action="store_false",
                   help="skip the few malformed messages the demo publishes to show they are dead-lettered "
                        "or quarantined, never lost")
    p.add_argument("--output", type=Path, default=None,
                   help="where the ledger, the services' logs and their supervisor go (default <run dir>/demo)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ensure_dotenv()
    settings = config.load()
    demo_dir = (args.output or settings.run_dir / "demo").resolve()
    started = time.monotonic()
    print(f"apt-energy demo: {args.households} households × {args.months} months, interval {args.interval / 3600:g}h, "
          f"speed {'max' if args.speed <= 0 else args.speed}")
    night = settings.rules.night_flow
    if args.interval > (night.night_end_hour - night.night_start_hour) * 3600:
        print(f"note: the leak rule (night_flow) needs readings of at most "
              f"{night.night_end_hour - night.night_start_hour}h to see a night; it is idle at this interval")
    stack = NativeStack.from_settings(settings)
    stack.up()
    print("native stack: " + ", ".join(f"{s.name} {s.state}" for s in stack.status()))
    pipeline.down(demo_dir)  # services an earlier --keep-running left behind would see the reset
    topics = reset_pipeline(settings)
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    with connect(settings, role="owner") as conn:   # TRUNCATE is the owner's
        conn.execute(f"TRUNCATE {', '.join(FORECAST_TABLES)}")
        conn.commit()
    print(f"reset: tables {', '.join(PIPELINE_TABLES + FORECAST_TABLES)}; topics {', '.join(topics)}; "
          "spark checkpoints")
    options = PipelineOptions(directory=demo_dir, bridge_client_id=settings.bridge.client_id,
                              notifier=args.slack == "on")
    forecast_s = forecast_streamed_months(settings, args)
    try:
        start_services(options)
        ledger_path, progress, timings, generated = drive(settings, args, options, started)
    finally:
        if not args.keep_running:
            pipeline.down(demo_dir)
    truth = check(settings, read_ledger(ledger_path))
    ok = summary(settings, truth, progress, timings, generated)
    forecast_s += bills_and_next_month(settings, args)
    print(f"forecast steps took {forecast_s:.0f} s in all ({args.households} households)")
    if args.stack_down:
        stack.down()
    tz = settings.complex.tz
    start = in_zone(args.start, tz)
    next_steps(settings, demo_dir, args.keep_running, start, add_months(start, args.months, tz),
               slack=args.slack == "on")
    if not ok:
        raise CheckFailed("truth check failed: the database does not match the ledger (see above)")
    return 0


def _months(args: argparse.Namespace, tz: ZoneInfo) -> tuple[date, date]:
    """The first streamed local month and the month after the last."""
    start = in_zone(args.start, tz).astimezone(tz)
    first = date(start.year, start.month, 1)
    end = add_months(in_zone(args.start, tz), args.months, tz).astimezone(tz)
    after = date(end.year, end.month, 1) if end.day == 1 and end.hour == 0 else date(
        end.year + end.month // 12, end.month % 12 + 1, 1)
    return first, after


def forecast_streamed_months(settings: Settings, args: argparse.Namespace) -> float:
    """Forecast the streamed months from the simulated past, issued at the stream's start (event time),
    so the projection rule has a forecast for each month it sees. Returns the seconds it took."""
    from apt_energy.edge.cli import select_households
    from apt_energy.forecast import job
    from apt_energy.forecast.cli import forecast_spark, history_frame, history_totals, issue_forecasts

    began = time.monotonic()
    first, after = _months(args, settings.complex.tz)
    horizon = min(12, (after.year - first.year) * 12 + after.month - first.month)
    households = select_households(settings, count=args.households)
    print(f"forecast: simulating {HISTORY_MONTHS} past months of {len(households)} households, "
          f"forecasting {first:%Y-%m} + {horizon - 1} months on Spark …", flush=True)
    months, totals, model = history_totals(settings, households, until=first, months=HISTORY_MONTHS,
                                           interval_s=args.interval)
    series = job.series_frame(history_frame(households, months, totals, model), settings.complex.id)
    spark = forecast_spark(settings)
    try:
        fc = issue_forecasts(settings, spark, series, horizon=horizon,
                             issued_at=in_zone(args.start, settings.complex.tz))
    finally:
        spark.stop()
    took = time.monotonic() - began
    print(f"forecast: {len(fc):,} rows in usage_forecasts ({series.groupby(job.KEYS).ngroups:,} series) "
          f"in {took:.0f} s", flush=True)
    return took


def bills_and_next_month(settings: Settings, args: argparse.Namespace) -> float:
    """Import the past, forecast next month from past + streamed year, bill the streamed months, and print
    bills (complex total, median and 90th percentile per energy type) and the forecast. Returns the
    seconds the forecast took."""
    from apt_energy.billing import store as bills
    from apt_energy.billing.cli import contract_areas, tariffs_for
    from apt_energy.edge.cli import select_households
    from apt_energy.forecast import job
    from apt_energy.forecast.cli import forecast_spark, import_history, issue_forecasts

    first, after = _months(args, settings.complex.tz)
    last = date(after.year - (after.month == 1), (after.month - 2) % 12 + 1, 1)
    households = select_households(settings, count=args.households)
    imported = import_history(settings, households, until=first, months=HISTORY_MONTHS, interval_s=args.interval)
    print(f"\nhistory: {imported:,} imported household-months before {first:%Y-%m} (marked in usage_imports)")
    began = time.monotonic()
    with connect(settings) as conn:
        series = job.series_frame(job.read_usage(conn), settings.complex.id)
    spark = forecast_spark(settings)
    try:
        # issued when the streamed year ends (event time), after the issue made at its start
        tz = settings.complex.tz
        issued = add_months(in_zone(args.start, tz), args.months, tz)
        issue_forecasts(settings, spark, series, horizon=3, issued_at=issued)
    finally:
        spark.stop()
    took = time.monotonic() - began
    print(f"forecast: {after:%Y-%m} and the 2 months after, from {HISTORY_MONTHS} imported + the streamed months, "
          f"in {took:.0f} s", flush=True)
    rates, areas = tariffs_for(settings), contract_areas(settings)
    reading_day = settings.billing.reading_day
    written, month, billing_began = 0, first, time.monotonic()
    with connect(settings) as conn:
        while month < after:
            written += bills.compute(conn, rates, month=month, contract_areas=areas, reading_day=reading_day,
                                     tz=settings.complex.tz)
            bills.project(conn, rates, month, tz=settings.complex.tz, model=settings.rules.projection.model,
                          contract_areas=areas, reading_day=reading_day)
            month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        print(f"bills: {written:,} computed for {first:%Y-%m}..{last:%Y-%m}, with projections, "
              f"in {time.monotonic() - billing_began:.0f} s")
        print(f"\nBills {last:%Y-%m} (KRW; `apt-energy bills show --household ID` for a statement)")
        print("\n".join(bills.summary_lines(conn, last)) or "no bills (no tariff in force that month)")
        print(f"\nForecast for next month, {after:%Y-%m} (pooled model; the complex total is the sum of what each "
              "household is told)")
        print("\n".join(job.summary_lines(conn, after)) or "no forecast (too short a history)")
    return took


def start_services(options: PipelineOptions) -> None:
    """Spark job, bridge and notifier under their supervisor; returns once the bridge has subscribed."""
    env = {**os.environ, "APT_ENERGY_LOG_LEVEL": "INFO"}
    pipeline.up(options, env=env)
    try:
        pipeline.wait_bridges_subscribed(options)
    except ServiceError as exc:
        raise CheckFailed(f"the bridge did not subscribe: {exc}") from exc
    d = options.directory
    print(f"started: spark job (log {d / 'spark.log'}), bridge (log {d / 'bridge.log'}, subscribed)"
          + (f", notifier (log {d / 'notifier.log'})" if options.notifier else "")
          + f"; `apt-energy pipeline status --dir {d}`")


def drive(settings: Settings, args: argparse.Namespace, options: PipelineOptions,
          started: float) -> tuple[Path, Progress, dict[str, float], int]:
    """Run the fleet, then wait until the database has every reading and Slack every alert.
    Returns the ledger's path, the last progress, the timings and how many readings were generated."""
    from apt_energy.edge.cli import select_households
    from apt_energy.edge.fleet import Fleet, FleetOptions

    demo_dir, tz = options.directory, settings.complex.tz
    households = select_households(settings, count=args.households)
    start = in_zone(args.start, tz)
    until = add_months(start, args.months, tz)
    ledger_path = demo_dir / "ledger.json"
    fleet = Fleet.from_settings(settings, households, FleetOptions(
        start=start, until=until, interval_s=args.interval, speed=args.speed, ledger_path=ledger_path,
        state_path=demo_dir / "edge-state.json", progress_s=3600.0))
    on_stop_signals(fleet.stop)
    thread = threading.Thread(target=fleet.run, name="edge", daemon=True)
    thread.start()
    progress, status, timings = Progress(), StatusLine(), {}
    bridge_stats = demo_dir / "bridge-stats.json"

    def observe() -> None:
        stats = fleet.stats()
        sample(settings, bridge_stats, stats.acked, progress)
        status.show(status_text(stats, progress, time.monotonic() - started, tz))
        try:
            pipeline.check_services(demo_dir)
        except ServiceError as exc:
            raise CheckFailed(str(exc)) from exc

    while thread.is_alive():
        thread.join(1.0)
        observe()
    timings["published"] = time.monotonic() - started
    bad = publish_bad_input(settings, households[0], until) if args.bad_input else 0
    expected = sum(t.readings for t in read_ledger(ledger_path).values())  # the fleet wrote it as it stopped
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while (progress.stored < expected or progress.quarantined < bad) and time.monotonic() < deadline:
        time.sleep(1.0)
        observe()
    timings["stored"] = time.monotonic() - started
    if options.notifier:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while pending_notifications(settings) and time.monotonic() < deadline:
            time.sleep(1.0)
            observe()
    observe()
    status.done()
    return ledger_path, progress, timings, fleet.stats().generated
