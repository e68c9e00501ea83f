"""The chaos suite's building blocks: a supervised pipeline of its own, a fleet run with a fault in the
middle, and the measurement each scenario ends in (the demo's ledger truth check, quarantine, Slack).

Everything real: the native stack's Mosquitto, Kafka and PostgreSQL, the Spark job, bridge and notifier
under ``apt-energy pipeline`` (as processes), the edge fleet in this process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.alerts.notifier import NotifierOptions
from apt_energy.config import Household, Settings
from apt_energy.database import connect
from apt_energy.edge.fleet import Fleet, FleetOptions

from apt_energy import pipeline
from apt_energy.kafka import kafka_client
from apt_energy.pipeline import PipelineOptions
from apt_energy.supervise import ServiceRecord
from apt_energy.truth import TruthResult, check, database_totals, read_ledger

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
    quarantined: int = 0
    dead_lettered: int = 0
    alerts: int = 0
    posts_per_alert: str = "-"
    restarts: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def row(self) -> tuple[str, ...]:
        restarts = ",".join(f"{k} {v}" for k, v in self.restarts.items() if v) or "-"
        return (self.scenario, f"{self.readings:,}", str(self.lost), str(self.doubled), str(self.quarantined),
                str(self.dead_lettered), str(self.alerts), self.posts_per_alert, restarts, self.note)


HEADER = ("scenario", "readings", "lost", "doubled", "quarantined", "dead-lettered", "alerts", "posts/alert",
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
        from apt_energy.contract import Reading
        from apt_energy.reset import mqtt_session
        from apt_energy.topics import reading_topic

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

    consumer = Consumer(kafka_client(settings, "admin").config(**{"group.id": "chaos-watermarks"}))
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


def run_scenario(chaos: Chaos, name: str, start: datetime, *, fault: Callable[[], None] | None = None,
                 fault_at_s: float = 2.5, tmp: Path) -> tuple[Outcome, TruthResult]:
    """Simulate fresh households for DAYS with ``fault`` injected ``fault_at_s`` into the run, wait
    until the pipeline settles, and measure."""
    households = chaos.next_households()
    restarts_before = {k: r.restarts for k, r in chaos.services().items()}
    quarantine_before, dead_before = quarantined(chaos.settings), dead_letters(chaos.settings)
    ledger_path = tmp / f"ledger-{name}.json"
    until = start + timedelta(days=DAYS)
    fleet = Fleet(chaos.settings, households, FleetOptions(
        start=start, until=until, interval_s=INTERVAL_S, speed=DAYS * 86400 / RUN_S, ledger_path=ledger_path,
        state_path=tmp / f"edge-state-{name}.json", progress_s=3600.0, drain_timeout_s=240.0))
    thread = threading.Thread(target=fleet.run, name=f"fleet-{name}", daemon=True)
    thread.start()
    if fault is not None:
        time.sleep(fault_at_s)
        fault()
    thread.join(300)
    assert not thread.is_alive(), "the fleet did not finish"
    ledger = read_ledger(ledger_path)
    truth = settle(chaos, ledger, restarts_before)
    outcome = Outcome(name, readings=truth.readings, lost=truth.lost, doubled=truth.doubled,
                      quarantined=quarantined(chaos.settings) - quarantine_before,
                      dead_lettered=dead_letters(chaos.settings) - dead_before)
    outcome.alerts, outcome.posts_per_alert = slack_delivery(chaos, [h.device_id for h in households])
    services = chaos.services()
    outcome.restarts = {k: r.restarts - restarts_before.get(k, 0) for k, r in services.items()}
    outcome.note = ", ".join(f"{k} crash-loop" for k, r in services.items() if r.state == "crash-loop")
    return outcome, truth


def settle(chaos: Chaos, ledger: dict[tuple[str, str, str], object], restarts_before: dict[str, int]) -> TruthResult:
    """Wait until the database holds the ledger and Slack every alert, or nothing has moved for QUIET_S
    (counted from the last change and the last service start) — a lost reading never arrives — or a
    service keeps crashing (GIVE_UP_RESTARTS in this scenario: a poison message, it will not recover)."""
    from apt_energy.progress import pending_notifications

    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, last_change = None, time.monotonic()
    while True:
        truth = check(chaos.settings, ledger, only_ledger_devices=True)  # type: ignore[arg-type]
        pending = pending_notifications(chaos.settings)
        if truth.ok and pending == 0:
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
