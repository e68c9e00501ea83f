"""``apt-energy demo``: the whole complex end to end, with a live status line and a checked summary.

Brings the native stack up, resets the pipeline's data (topics, tables, checkpoints) so the result is
reproducible, starts the Spark job and the bridge as their own processes and the edge fleet in this
one, waits until every published reading is stored, then prints a summary per building and energy
type, the alerts, and a truth check of the database against the simulator's ledger.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt

from apt_energy import config
from apt_energy.cliutil import add_env_flag, add_months, duration, in_zone, local_date, on_stop_signals
from apt_energy.config import Household, Settings
from apt_energy.database import connect
from apt_energy.errors import CheckFailed
from apt_energy.kafka import kafka_client
from apt_energy.mqtt import MqttRole, login
from apt_energy.stack.native import NativeStack
from apt_energy.stack.secrets import ensure_dotenv

logger = logging.getLogger(__name__)

PIPELINE_TABLES = ("alert_notifications", "alerts", "quarantine", "meter_readings", "energy_usage", "devices")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "demo", help="run the whole complex end to end and check the result",
        description="Stack up → reset pipeline data → Spark job + bridge + edge fleet → drain → summary and a "
                    "truth check of PostgreSQL against the simulator's ledger (exit 1 if they differ).")
    add_env_flag(p, "--households", "APT_ENERGY_DEMO_HOUSEHOLDS", default=840, type=int, help="households to simulate")
    add_env_flag(p, "--months", "APT_ENERGY_DEMO_MONTHS", default=12, type=int, help="simulated months")
    add_env_flag(p, "--start", "APT_ENERGY_DEMO_START", default=local_date("2024-01-01"), type=local_date,
                 help="simulated start, a date in the complex's time zone")
    add_env_flag(p, "--interval", "APT_ENERGY_DEMO_INTERVAL", default=86400, type=duration,
                 help="meter reporting interval; a daily read keeps 840 households × 12 months (920k readings) "
                      "within ~4 minutes on 2 cores. The leak rule needs ≤ 6h to see nights: try --interval 6h "
                      "with fewer --months or --households")
    add_env_flag(p, "--speed", "APT_ENERGY_DEMO_SPEED", default=0.0, type=float,
                 help="simulated seconds per real second; 0 = as fast as the pipeline takes it")
    p.add_argument("--keep-running", action="store_true",
                   help="leave the Spark job and bridge running afterwards (for Grafana / MQTT Explorer)")
    p.add_argument("--slack", choices=["on", "off"], default="on",
                   help="deliver alerts (Slack if SLACK_BOT_TOKEN/SLACK_WEBHOOK_URL is set, else console log)")
    p.add_argument("--stack-down", action="store_true", help="stop the native stack at the end")
    p.add_argument("--no-bad-input", dest="bad_input", action="store_false",
                   help="skip the few malformed messages the demo publishes to show they are dead-lettered "
                        "or quarantined, never lost")
    p.add_argument("--output", type=Path, default=None,
                   help="where the ledger and the services' logs go (default <run dir>/demo)")
    p.set_defaults(func=run)


@dataclass
class Progress:
    published: int = 0
    bridged: int = 0
    stored: int = 0
    alerts: int = 0
    delivered: int = 0
    quarantined: int = 0


def run(args: argparse.Namespace) -> int:
    ensure_dotenv()
    settings = config.load()
    demo_dir = args.output or settings.run_dir / "demo"
    started = time.monotonic()
    print(f"apt-energy demo: {args.households} households × {args.months} months, interval {args.interval / 3600:g}h, "
          f"speed {'max' if args.speed <= 0 else args.speed}")
    night = settings.rules.night_flow
    if args.interval > (night.night_end_hour - night.night_start_hour) * 3600:
        print(f"note: the leak rule (night_flow) needs readings of at most "
              f"{night.night_end_hour - night.night_start_hour}h to see a night; it is idle at this interval")
    stack = NativeStack(settings)
    stack.up()
    print("native stack: " + ", ".join(f"{s.name} {s.state}" for s in stack.status()))
    reset(settings, stack, demo_dir)
    procs = start_services(settings, demo_dir, slack=args.slack == "on")
    from apt_energy.edge.cli import select_households
    from apt_energy.edge.fleet import Fleet, FleetOptions

    households = select_households(settings, count=args.households)
    start = in_zone(args.start, settings.complex.tz)
    until = add_months(start, args.months, settings.complex.tz)
    ledger_path = demo_dir / "ledger.json"
    fleet = Fleet(settings, households, FleetOptions(
        start=start, until=until, interval_s=args.interval, speed=args.speed, ledger_path=ledger_path,
        state_path=demo_dir / "edge-state.json", progress_s=3600.0))
    on_stop_signals(fleet.stop)
    thread = threading.Thread(target=fleet.run, name="edge", daemon=True)
    thread.start()
    progress = Progress()
    status = StatusLine()
    timings: dict[str, float] = {}
    try:
        while thread.is_alive():
            thread.join(1.0)
            sample(settings, demo_dir, fleet.acked, progress)
            status.show(line(fleet, progress, time.monotonic() - started))
            check_alive(procs)
        timings["published"] = time.monotonic() - started
        bad = publish_bad_input(settings, households[0], until) if args.bad_input else 0
        expected = sum(e.count for e in fleet.ledger.entries.values())
        deadline = time.monotonic() + 600
        while (progress.stored < expected or progress.quarantined < bad) and time.monotonic() < deadline:
            time.sleep(1.0)
            sample(settings, demo_dir, fleet.acked, progress)
            status.show(line(fleet, progress, time.monotonic() - started))
            check_alive(procs)
        timings["stored"] = time.monotonic() - started
        if args.slack == "on":
            wait_delivered(settings, progress, demo_dir, fleet, status, started)
        status.done()
    finally:
        if not args.keep_running:
            stop_services(procs)
    ok = summary(settings, ledger_path, progress, timings, fleet.stats().generated)
    if args.stack_down:
        stack.down()
    next_steps(settings, demo_dir, args.keep_running, start, until, slack=args.slack == "on")
    if not ok:
        raise CheckFailed("truth check failed: the database does not match the ledger (see above)")
    return 0


# ---------------------------------------------------------------------------------------- setup


def reset(settings: Settings, stack: NativeStack, demo_dir: Path) -> None:
    """A reproducible run: empty pipeline tables, fresh topics and checkpoints, no edge state."""
    from confluent_kafka.admin import AdminClient

    with connect(settings, role="owner") as conn:  # TRUNCATE is the owner's, never the pipeline's
        conn.execute(f"TRUNCATE {', '.join(PIPELINE_TABLES)} RESTART IDENTITY")
        conn.commit()
    k = settings.kafka
    admin = AdminClient(kafka_client(settings, "admin").config())
    topics = [k.readings_topic, k.devices_topic, k.dead_letter_topic]
    existing = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in topics if t in existing]
    if doomed:
        for future in admin.delete_topics(doomed).values():
            future.result(timeout=30)
        for _ in range(60):  # deletion completes asynchronously
            if not set(doomed) & set(admin.list_topics(timeout=10).topics):
                break
            time.sleep(0.5)
    stack.kafka.create_topics()
    forget_bridge_session(settings)
    shutil.rmtree(settings.path(settings.spark.checkpoint_dir), ignore_errors=True)
    shutil.rmtree(demo_dir, ignore_errors=True)
    (demo_dir).mkdir(parents=True)
    print(f"reset: tables {', '.join(PIPELINE_TABLES)}; topics {', '.join(topics)}; spark checkpoints")


@contextmanager
def mqtt_session(settings: Settings, client_id: str, role: MqttRole) -> Iterator[mqtt.Client]:
    """A short-lived MQTT v5 client with a clean start, connected (or given up on after 5 s) on entry."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    login(client, settings, role)
    client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def forget_bridge_session(settings: Settings) -> None:
    """The bridge's persistent MQTT session may still queue messages from an earlier run: connecting
    once with a clean start makes the broker discard it."""
    with mqtt_session(settings, settings.bridge.client_id, "bridge"):
        pass


def start_services(settings: Settings, demo_dir: Path, *, slack: bool) -> dict[str, subprocess.Popen[bytes]]:
    env = {**os.environ, "APT_ENERGY_LOG_LEVEL": "INFO"}
    spark_argv = [sys.executable, "-m", "apt_energy.spark"] + ([] if slack else ["--no-notifier"])
    procs = {}
    bridge_argv = [sys.executable, "-m", "apt_energy.bridge", "--stats-file", str(demo_dir / "bridge-stats.json")]
    for name, argv in (("spark", spark_argv), ("bridge", bridge_argv)):
        log = open(demo_dir / f"{name}.log", "ab")
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    # The bridge's session is fresh: anything published before it subscribes would have no subscriber.
    stats = demo_dir / "bridge-stats.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        check_alive(procs)
        try:
            if json.loads(stats.read_text()).get("subscribed"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    else:
        raise CheckFailed(f"the bridge did not subscribe within 60 s; see {demo_dir / 'bridge.log'}")
    print(f"started: spark job (log {demo_dir / 'spark.log'}), bridge (log {demo_dir / 'bridge.log'}, subscribed)")
    return procs


def publish_bad_input(settings: Settings, household: Household, until: datetime) -> int:
    """Publish what a faulty gateway might send, so the run shows bad input set aside with a reason:
    one message that is not JSON (the bridge dead-letters it to Kafka) and readings the stream job
    quarantines. Returns how many should reach the quarantine table."""
    from apt_energy.contract import Reading
    from apt_energy.topics import reading_topic

    prefix = settings.mqtt.topic_prefix
    topic = reading_topic(prefix, household, "electricity")
    unit = settings.energy["electricity"].unit
    seq = 2**40  # far above any seq the fleet uses: a quarantined reading must never shadow a good one
    bad = [Reading(household.device_id, "electricity", seq, until, 3600, -1.5, 0.0, unit),          # negative
           Reading(household.device_id, "electricity", seq + 1, until, 3600, 1.0, 1.0, "MWh"),      # wrong unit
           Reading(household.device_id, "electricity", seq + 2, datetime.now(UTC) + timedelta(days=30), 3600,
                   1.0, 1.0, unit)]                                                                # future
    # As the admin: bad input on purpose, without taking the running device's own session.
    with mqtt_session(settings, f"{household.device_id}-faulty", "admin") as client:
        infos = [client.publish(topic, b"{not json", qos=1)]
        infos += [client.publish(topic, r.to_json(), qos=1) for r in bad]
        for info in infos:
            info.wait_for_publish(10)
    print(f"bad input: published 1 non-JSON message (→ {settings.kafka.dead_letter_topic}) and {len(bad)} invalid "
          "readings (→ quarantine table)")
    return len(bad)


def check_alive(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise CheckFailed(f"the {name} process exited with code {proc.returncode}; see its log under .run/demo/")


def stop_services(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


# ------------------------------------------------------------------------------------- progress


def sample(settings: Settings, demo_dir: Path, published: int, p: Progress) -> None:
    p.published = published
    stats = demo_dir / "bridge-stats.json"
    try:
        p.bridged = int(json.loads(stats.read_text())["forwarded"])
    except (OSError, ValueError, KeyError):
        pass
    with connect(settings) as conn:
        row = conn.execute(
            """SELECT (SELECT COALESCE(sum(reading_count), 0) FROM energy_usage),
                      (SELECT count(*) FROM alerts),
                      (SELECT count(*) FROM alert_notifications WHERE state IN ('sent', 'console')),
                      (SELECT count(*) FROM quarantine)""").fetchone()
    assert row is not None
    p.stored, p.alerts, p.delivered, p.quarantined = int(row[0]), int(row[1]), int(row[2]), int(row[3])


def line(fleet: object, p: Progress, elapsed: float) -> str:
    from apt_energy.edge.fleet import Fleet

    assert isinstance(fleet, Fleet)
    online = sum(1 for d in fleet.devices if d.connected)
    lag = max(p.bridged - p.stored, 0)
    return (f"[{elapsed:5.0f}s] sim {fleet.sim_time.astimezone(fleet.model.tz):%Y-%m-%d}  online {online}/"
            f"{len(fleet.devices)}  published {p.published:,}  bridged {p.bridged:,}  stored {p.stored:,}  "
            f"lag {lag:,}  alerts {p.alerts:,} raised / {p.delivered:,} delivered")


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


def wait_delivered(settings: Settings, p: Progress, demo_dir: Path, fleet: object, status: StatusLine,
                   started: float) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sample(settings, demo_dir, p.published, p)
        status.show(line(fleet, p, time.monotonic() - started))
        with connect(settings) as conn:
            row = conn.execute("SELECT count(*) FROM alert_notifications WHERE state IN ('pending', 'sending')"
                               ).fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(1.0)


# -------------------------------------------------------------------------------------- summary


def summary(settings: Settings, ledger_path: Path, p: Progress, timings: dict[str, float], generated: int) -> bool:
    from apt_energy.edge.ledger import Ledger

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
        household_months = conn.execute("SELECT count(*) FROM energy_usage WHERE energy_type = %s",
                                         (energy["electricity"].label_ko,)).fetchone()
        examples = conn.execute(
            """SELECT rule, b.building_number, h.floor * 100 + h.unit, a.energy_type, a.period, a.observed,
                      a.reference, a.unit FROM (
                 SELECT *, row_number() OVER (PARTITION BY rule ORDER BY id) AS n FROM alerts) a
               JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
               WHERE a.n <= 3 ORDER BY rule, a.n""").fetchall()
        db = {(d, k, mo.isoformat()): (Decimal(a), n) for d, k, mo, a, n in conn.execute(
            """SELECT h.device_id, et.key, u.usage_date, u.amount_exact, u.reading_count FROM energy_usage u
               JOIN households h ON h.id = u.household_id JOIN energy_types et ON et.label_ko = u.energy_type"""
        ).fetchall()}
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()
        devices = conn.execute("SELECT count(*) FROM devices").fetchone()

    print("\nYearly usage and emissions per building")
    print(f"{'building':>8}  {'energy':<12} {'usage':>16} {'emissions':>14}  {'peak month':<10} {'households':>10}")
    totals: dict[str, tuple[Decimal, float]] = {}
    for building, key, amount, emission, n in per_building:
        e = energy[key]
        print(f"{building:>8}  {e.label_ko + ' ' + e.label_en:<12} {float(amount):>12,.1f} {e.unit:<3} "
              f"{emission / 1000:>10,.2f} t CO2e  {peaks[(building, key)]:%Y-%m}    {n:>10}")
        so_far = totals.get(key, (Decimal(0), 0.0))
        totals[key] = (so_far[0] + Decimal(amount), so_far[1] + float(emission))
    for key, (total, co2) in totals.items():
        e = energy[key]
        print(f"{'all':>8}  {e.label_ko + ' ' + e.label_en:<12} {float(total):>12,.1f} {e.unit:<3} "
              f"{co2 / 1000:>10,.2f} t CO2e")

    months = int(household_months[0]) if household_months else 0
    print(f"\nAlerts by rule and energy type ({months:,} household-months per energy type)")
    for rule, key, n, resolved in by_rule:
        rate = 100 * n / months if months else 0.0
        extra = f", {resolved} resolved" if resolved else ""
        print(f"  {rule:<20} {key:<12} {n:>6}  ({rate:.2f} % of household-months{extra})")
    if not by_rule:
        print("  none")
    for rule, building, door, key, period, observed, reference, unit in examples:
        print(f"    e.g. {rule:<18} {building}동 {door}호  {key:<11} {period}  {observed:,.2f} vs {reference:,.2f} "
              f"{'h' if rule == 'night_flow' else unit}")

    ledger = Ledger.read(ledger_path)
    differ = {k: v for k, v in ledger.items() if db.get(k) != v}
    unknown = {k: v for k, v in db.items() if k not in ledger}
    count = sum(n for _, n in ledger.values())
    wall = timings.get("stored", 0.0)
    print(f"\nTruth check: {len(ledger):,} household × meter × month totals from the ledger ({count:,} readings)")
    if not differ and not unknown:
        print("  ✓ PostgreSQL equals the simulator's ledger exactly, to the last reading")
    else:
        print(f"  ✗ {len(differ)} totals differ and {len(unknown)} are not in the ledger, e.g.:")
        for k in list(differ)[:5]:
            print(f"    {k}: ledger {ledger[k]}, database {db.get(k)}")
    print(f"  generated {generated:,} readings, published {p.published:,}, stored {p.stored:,}, quarantined "
          f"{quarantined[0] if quarantined else 0}, device status rows {devices[0] if devices else 0}")
    if wall:
        print(f"  wall time {wall:.0f} s (edge done at {timings.get('published', 0):.0f} s), "
              f"{count / wall:,.0f} readings/s end to end")
    return not differ and not unknown


def next_steps(settings: Settings, demo_dir: Path, keep_running: bool, start: datetime, until: datetime, *,
               slack: bool = True) -> None:
    from apt_energy.alerts import destination

    pg = settings.postgres
    alerts = destination(settings) if slack else "not delivered (--slack off): they wait in alert_notifications"
    tz = settings.complex.tz
    print(f"""
Where to look next
  SQL:   psql "host={pg.host} port={pg.port} dbname={pg.database} user={pg.writer_user}"   (password in .env)
         SELECT * FROM energy_usage ORDER BY usage_date, household_id LIMIT 20;
  MQTT:  mosquitto_sub -h {settings.mqtt.host} -p {settings.mqtt.port} -t '{settings.mqtt.topic_prefix}/#' -v
         (or MQTT Explorer → {settings.mqtt.host}:{settings.mqtt.port}; run `apt-energy edge --speed 3600` for traffic)
  Grafana: the dashboards' queries over this run (as Grafana's read-only role):
         apt-energy dashboards check --from {start.astimezone(tz):%Y-%m-%d} --to {until.astimezone(tz):%Y-%m-%d}
         (docker compose serves them at http://localhost:3000; see README "What you see")
  Alerts: {alerts}
         notifier log {demo_dir / 'spark.log'}; list them with their delivery state: `apt-energy alerts`
  Stop:  {'the Spark job and bridge are still running; ' if keep_running else ''}`apt-energy stack down`""")

