"""The chaos suite's building blocks: a supervised pipeline of its own, a fleet run with a fault in the
middle, and the measurement each scenario ends in (the demo's ledger truth check, quarantine, Slack).

Everything real: the native stack's Mosquitto, Kafka and PostgreSQL, the Spark job, bridge and notifier
under ``apt-energy pipeline`` (as processes), the edge fleet in this process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.alerts.notifier import NotifierOptions
from apt_energy.app import pipeline
from apt_energy.app.pipeline import PipelineOptions
from apt_energy.app.supervise import ServiceRecord
from apt_energy.app.truth import TruthResult, check, database_totals, read_ledger
from apt_energy.config import Household, Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect
from apt_energy.edge.fleet import Fleet, FleetOptions

HOUSEHOLDS = 20            # per scenario: each scenario simulates households of its own
DAYS = 3
INTERVAL_S = 3600
RUN_S = 8.0                # real seconds the fleet takes for DAYS, so a fault lands mid-run
QUIET_S = 20.0             # no progress for this long (and no service restart) → the scenario has settled
# ... but while the readings are all in and alerts still wait, the notifier may be in its backoff after
# Slack failures (up to max_backoff_s between passes): a quiet spell that long is not yet "settled"
NOTIFY_QUIET_S = NotifierOptions().max_backoff_s + 20.0
RESTART_GRACE_S = 90.0     # ... and no service started this recently: a JVM under load takes a while
READY_TIMEOUT_S = 300.0
GIVE_UP_RESTARTS = 2
SETTLE_TIMEOUT_S = 240.0      # six ambiguous Slack failures alone take ~2 min of notifier backoff


@dataclass
class Outcome:
    """One scenario's measurement: one row of the table ``make chaos`` prints."""

    scenario: str
    readings: int = 0
    lost: int = 0
    doubled: int = 0
    duplicates: int = 0        # intervals received again with the same value: counted, not stored
    conflicts: int = 0         # intervals received again with another value: quarantined
    quarantined: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    posts_per_alert: str = "-"
    restarts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def row(self) -> tuple[str, ...]:
        restarts = ",".join(f"{k} {v}" for k, v in self.restarts.items() if v) or "-"
        return (self.scenario, f"{self.readings:,}", str(self.lost), str(self.doubled), str(self.duplicates),
                str(self.conflicts), str(self.quarantined),
                str(self.dead_lettered), str(self.alerts), self.posts_per_alert, restarts, self.note)


HEADER = ("scenario", "readings", "lost", "doubled", "duplicates", "conflicts",
          "quarantined", "dead-lettered", "alerts", "posts/alert",
          "restarts", "note")


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [HEADER, *(o.row() for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


@dataclass
class Chaos:
    """A pipeline of its own (isolated database, topics, MQTT prefix, bridge session, Slack stand-in)."""

    settings: Settings
    env: dict[str, str]
    directory: Path
    slack_posts: Callable[[], list[dict[str, object]]]
    households: list[Household] = field(default_factory=list)
    used: int = 0

    @property
    def options(self) -> PipelineOptions:
        return PipelineOptions(directory=self.directory, bridge_client_id=self.settings.bridge.client_id,
                               stop_timeout_s=30)

    def up(self) -> None:
        pipeline.up(self.options, env=self.env)
        pipeline.wait_bridges_subscribed(self.options, timeout_s=120)

    def wait_ready(self, canary: Household) -> None:
        """One reading through the whole chain (MQTT → bridge → Kafka → Spark → PostgreSQL), so the first
        scenario does not measure the Spark job's start-up."""
        from apt_energy.app.reset import mqtt_session
        from apt_energy.core.contract import Reading
        from apt_energy.core.topics import reading_topic

        reading = Reading(canary.device_id, "electricity", 1, datetime(2024, 1, 1, tzinfo=UTC), INTERVAL_S,
                          0.5, 0.5, "kWh")
        with mqtt_session(self.settings, f"canary-{canary.device_id}", "admin") as client:
            client.publish(reading_topic(self.settings.mqtt.topic_prefix, canary, "electricity"), reading.to_json(),
                           qos=1).wait_for_publish(10)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not database_totals(self.settings, [canary.device_id]):
            pipeline.check_services(self.directory)
            assert time.monotonic() < deadline, f"the canary reading was not stored; see {self.directory}/*.log"
            time.sleep(1.0)

    def down(self) -> None:
        pipeline.down(self.directory, timeout_s=30)

    def services(self) -> dict[str, ServiceRecord]:
        return {r.name: r for r in pipeline.status(self.directory)[1]}

    def pid(self, service: str) -> int:
        pid = self.services()[service].pid
        assert pid is not None, f"{service} is not running"
        return pid

    def kill(self, service: str) -> None:
        os.kill(self.pid(service), signal.SIGKILL)

    def next_households(self) -> list[Household]:
        chosen = self.households[self.used:self.used + HOUSEHOLDS]
        self.used += HOUSEHOLDS
        assert len(chosen) == HOUSEHOLDS, "the complex has run out of households for more scenarios"
        return chosen


def dead_letters(settings: Settings) -> int:
    """Messages in the dead-letter topic (sum of its partitions' high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(KafkaClient.from_settings(settings, "admin").config(**{"group.id": "chaos-watermarks"}))
    try:
        topic = settings.kafka.dead_letter_topic
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def quarantined(settings: Settings) -> int:
    with connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM quarantine").fetchone()
    return int(row[0]) if row else 0


def duplicates(settings: Settings, devices: list[str]) -> int:
    """Readings the sink counted as repeats of a stored interval (its ``duplicate_readings``, issue 21)."""
    with connect(settings) as conn:
        row = conn.execute("SELECT to_regclass('duplicate_readings') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        row = conn.execute("SELECT count(*) FROM duplicate_readings WHERE device_id = ANY(%s)", (devices,)).fetchone()
    return int(row[0]) if row else 0


def conflicts(settings: Settings, devices: list[str]) -> int:
    """Readings quarantined because their interval was stored with another value."""
    with connect(settings) as conn:
        row = conn.execute("SELECT count(*) FROM quarantine WHERE device_id = ANY(%s) AND reason LIKE 'conflict%%'",
                           (devices,)).fetchone()
    return int(row[0]) if row else 0


def stored_twice(settings: Settings, devices: list[str]) -> int:
    """Intervals (device, meter, interval end) stored more than once."""
    with connect(settings) as conn:
        row = conn.execute("""SELECT count(*) FROM (SELECT 1 FROM meter_readings WHERE device_id = ANY(%s)
                              GROUP BY device_id, meter, ts HAVING count(*) > 1) x""", (devices,)).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class Before:
    restarts: dict[str, int]
    quarantined: int
    dead_lettered: int


def before(chaos: Chaos) -> Before:
    return Before({k: r.restarts for k, r in chaos.services().items()}, quarantined(chaos.settings),
                  dead_letters(chaos.settings))


def run_scenario(chaos: Chaos, name: str, start: datetime, *, fault: Callable[[], None] | None = None,
                 fault_at_s: float = 2.5, tmp: Path, on_fleet: Callable[[Fleet], None] | None = None,
                 settled: Callable[[list[str]], bool] | None = None) -> tuple[Outcome, TruthResult]:
    """Simulate fresh households for DAYS with ``fault`` injected ``fault_at_s`` into the run, wait
    until the pipeline settles (and ``settled`` holds for the scenario's devices), and measure."""
    households = chaos.next_households()
    was = before(chaos)
    ledger_path = tmp / f"ledger-{name}.json"
    until = start + timedelta(days=DAYS)
    fleet = Fleet.from_settings(chaos.settings, households, FleetOptions(
        start=start, until=until, interval_s=INTERVAL_S, speed=DAYS * 86400 / RUN_S, ledger_path=ledger_path,
        state_path=tmp / f"edge-state-{name}.json", progress_s=3600.0, drain_timeout_s=240.0))
    if on_fleet is not None:
        on_fleet(fleet)
    thread = threading.Thread(target=fleet.run, name=f"fleet-{name}", daemon=True)
    thread.start()
    if fault is not None:
        time.sleep(fault_at_s)
        fault()
    thread.join(300)
    assert not thread.is_alive(), "the fleet did not finish"
    return measure(chaos, name, households, ledger_path, was, settled)


ROOT = Path(__file__).resolve().parents[2]


def acknowledged(ledger_path: Path) -> int:
    return sum(t.readings for t in read_ledger(ledger_path).values()) if ledger_path.exists() else 0


def run_edge_killed(chaos: Chaos, name: str, start: datetime, *, kill_after: int,
                    tmp: Path) -> tuple[Outcome, TruthResult, Path]:
    """The edge as a process of its own, killed with SIGKILL once the broker acknowledged ``kill_after``
    readings and started again with the very same command; returns the measurement and the state file."""
    households = chaos.next_households()
    was = before(chaos)
    ledger_path, state_path = tmp / f"ledger-{name}.json", tmp / f"edge-state-{name}.json"
    until = start + timedelta(days=DAYS)
    command = [sys.executable, "-m", "tests.chaos.edge_process", "--devices", ",".join(h.device_id for h in households),
               "--start", start.isoformat(), "--until", until.isoformat(), "--interval", str(INTERVAL_S),
               "--speed", str(DAYS * 86400 / RUN_S), "--ledger", str(ledger_path), "--state", str(state_path)]
    env = {**os.environ, **chaos.env}
    with (tmp / "edge-1.log").open("w") as log:
        first = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        # half-way by what the broker acknowledged (the ledger grows as it goes), not by the clock alone: a
        # loaded machine may take seconds to start the process
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and first.poll() is None and acknowledged(ledger_path) < kill_after:
            time.sleep(0.05)
        assert first.poll() is None, f"the edge ended before the kill; see {tmp / 'edge-1.log'}"
        first.kill()
        first.wait(30)
    with (tmp / "edge-2.log").open("w") as log:
        rc = subprocess.run(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=300).returncode
    assert rc == 0, f"the restarted edge exited {rc}; see {tmp / 'edge-2.log'}"
    outcome, truth = measure(chaos, name, households, ledger_path, was)
    return outcome, truth, state_path


def measure(chaos: Chaos, name: str, households: list[Household], ledger_path: Path, was: Before,
            settled: Callable[[list[str]], bool] | None = None) -> tuple[Outcome, TruthResult]:
    devices = [h.device_id for h in households]
    ledger = read_ledger(ledger_path)
    truth = settle(chaos, ledger, was.restarts, (lambda: settled(devices)) if settled else None)  # type: ignore[arg-type]
    outcome = Outcome(name, readings=truth.readings, lost=truth.lost, doubled=truth.doubled,
                      duplicates=duplicates(chaos.settings, devices), conflicts=conflicts(chaos.settings, devices),
                      quarantined=quarantined(chaos.settings) - was.quarantined,
                      dead_lettered=dead_letters(chaos.settings) - was.dead_lettered)
    restarts_before = was.restarts
    outcome.alerts, outcome.posts_per_alert = slack_delivery(chaos, [h.device_id for h in households])
    services = chaos.services()
    outcome.restarts = {k: r.restarts - restarts_before.get(k, 0) for k, r in services.items()}
    outcome.note = ", ".join(f"{k} crash-loop" for k, r in services.items() if r.state == "crash-loop")
    return outcome, truth


def settle(chaos: Chaos, ledger: dict[tuple[str, str, str], object], restarts_before: dict[str, int],
           settled: Callable[[], bool] | None = None) -> TruthResult:
    """Wait until the database holds the ledger and Slack every alert, or nothing has moved for QUIET_S
    (counted from the last change and the last service start) — a lost reading never arrives — or a
    service keeps crashing (GIVE_UP_RESTARTS in this scenario: a poison message, it will not recover)."""
    from apt_energy.app.progress import pending_notifications

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, last_change = None, time.monotonic()
    while True:
        truth = check(chaos.settings, ledger, only_ledger_devices=True)  # type: ignore[arg-type]
        pending = pending_notifications(chaos.settings)
        if truth.ok and pending == 0 and (settled is None or settled()):
            return truth
        services = chaos.services().values()
        if any(r.state == "crash-loop" or r.restarts - restarts_before.get(r.name, 0) >= GIVE_UP_RESTARTS
               for r in services):
            return truth
        state = (truth.stored, pending, tuple((r.pid, r.state) for r in services))
        now = time.monotonic()
        if state != last:
            last, last_change = state, now
        newest_start = max((r.started_at or 0.0 for r in services), default=0.0)
        since_start = time.time() - newest_start
        quiet_s = NOTIFY_QUIET_S if truth.ok and pending else QUIET_S
        if (now - last_change > quiet_s and since_start > RESTART_GRACE_S) or now > deadline:
            return truth
        time.sleep(1.0)


def slack_delivery(chaos: Chaos, devices: list[str]) -> tuple[int, str]:
    """Alerts raised for ``devices``, and how often Slack got each of their notifications (min–max)."""
    with connect(chaos.settings) as conn:
        ids = [int(r[0]) for r in conn.execute(
            """SELECT n.id FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id
               JOIN households h ON h.id = a.household_id WHERE h.device_id = ANY(%s)""", (devices,)).fetchall()]
        alerts = conn.execute("""SELECT count(*) FROM alerts a JOIN households h ON h.id = a.household_id
                                 WHERE h.device_id = ANY(%s)""", (devices,)).fetchone()
    if not ids:
        return int(alerts[0]) if alerts else 0, "-"
    seen: Counter[int] = Counter()
    for post in chaos.slack_posts():
        meta = post.get("metadata")
        if isinstance(meta, str):
            meta = json.loads(meta)
        if isinstance(meta, dict):
            seen.update(int(i) for i in meta.get("event_payload", {}).get("notification_ids", []))
    counts = [seen[i] for i in ids]
    low, high = min(counts), max(counts)
    return int(alerts[0]) if alerts else 0, f"{low}" if low == high else f"{low}–{high}"
