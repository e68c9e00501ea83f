"""Faults the pipeline must survive, each ending in the ledger truth check (``make chaos``).

Every scenario runs fresh households for a few simulated days with its fault in the middle, waits until
the pipeline settles and measures readings lost / doubled / quarantined and Slack posts per alert."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from apt_energy.stack import NativeStack
from apt_energy.stack.process import read_pid

from apt_energy.reset import mqtt_session
from tests.chaos.conftest import OUTCOMES
from tests.chaos.harness import Chaos, Outcome, run_scenario
from tests.chaos.hostile import BRIDGE_LEVEL, corpus
from tests.chaos.slack_outage import AmbiguousSlack
from tests.slack_stub import SlackStub

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

START = datetime(2024, 2, 29, 15, tzinfo=UTC)   # 2024-03-01 00:00 in Seoul


def exactly(chaos: Chaos, name: str, tmp: Path, fault: object = None, **kw: object) -> Outcome:
    outcome, truth = run_scenario(chaos, name, START, fault=fault, tmp=tmp, **kw)  # type: ignore[arg-type]
    OUTCOMES.append(outcome)
    assert (outcome.lost, outcome.doubled) == (0, 0), f"{outcome}: {list(truth.differ.items())[:3]}"
    assert truth.ok
    assert outcome.alerts > 0 and outcome.posts_per_alert == "1", outcome
    return outcome


def test_no_fault_baseline(chaos: Chaos, scenario_dir: Path) -> None:
    outcome = exactly(chaos, "no fault", scenario_dir)
    assert not any(outcome.restarts.values())


def test_kill_9_bridge(chaos: Chaos, scenario_dir: Path) -> None:
    outcome = exactly(chaos, "kill -9 bridge", scenario_dir, lambda: chaos.kill("bridge"))
    assert outcome.restarts["bridge"] == 1


def test_kill_9_spark_job(chaos: Chaos, scenario_dir: Path) -> None:
    outcome = exactly(chaos, "kill -9 Spark job", scenario_dir, lambda: chaos.kill("spark"))
    assert outcome.restarts["spark"] >= 1


def test_kill_9_kafka(chaos: Chaos, native_stack: NativeStack, scenario_dir: Path) -> None:
    def fault() -> None:
        pid = read_pid(native_stack.kafka.pid_file)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)
        native_stack.kafka.up()

    exactly(chaos, "kill -9 Kafka", scenario_dir, fault)


def test_postgresql_restart(chaos: Chaos, native_stack: NativeStack, scenario_dir: Path) -> None:
    def fault() -> None:
        native_stack.postgres.down()
        time.sleep(2)
        native_stack.postgres.up()

    exactly(chaos, "PostgreSQL restart", scenario_dir, fault)


def test_mosquitto_restart(chaos: Chaos, native_stack: NativeStack, scenario_dir: Path) -> None:
    def fault() -> None:
        native_stack.mosquitto.down()   # SIGTERM
        time.sleep(2)
        native_stack.mosquitto.up()

    exactly(chaos, "Mosquitto restart (SIGTERM)", scenario_dir, fault)


def test_slack_outage_with_ambiguous_failures(chaos: Chaos, slack: tuple[SlackStub, AmbiguousSlack],
                                              scenario_dir: Path) -> None:
    _, proxy = slack
    exactly(chaos, "Slack outage, ambiguous failures", scenario_dir, lambda: proxy.outage(6), fault_at_s=0.5)


def hostile(chaos: Chaos, tmp: Path, name: str, bridge_level: bool) -> Outcome:
    target = chaos.households[chaos.used]   # the first household the scenario simulates
    items = [i for i in corpus(chaos.settings.mqtt.topic_prefix, target, START)
             if (i.name in BRIDGE_LEVEL) == bridge_level]

    def fault() -> None:
        with mqtt_session(chaos.settings, f"hostile-{target.device_id}", "admin") as client:
            infos = [client.publish(item.topic, item.payload, qos=1, retain=item.retain) for item in items]
            for info in infos:
                info.wait_for_publish(10)

    try:
        outcome = exactly(chaos, name, tmp, fault)
    finally:
        with mqtt_session(chaos.settings, f"hostile-{target.device_id}", "admin") as client:  # clear retained junk
            for item in items:
                if item.retain:
                    client.publish(item.topic, b"", qos=1, retain=True).wait_for_publish(10)
    assert not any(outcome.restarts.values()), outcome
    assert outcome.dead_lettered + outcome.quarantined >= len(items), outcome
    return outcome


def test_hostile_readings(chaos: Chaos, scenario_dir: Path) -> None:
    hostile(chaos, scenario_dir, "hostile readings (values)", bridge_level=False)


def test_hostile_messages(chaos: Chaos, scenario_dir: Path) -> None:
    hostile(chaos, scenario_dir, "hostile messages (topic, size, JSON)", bridge_level=True)
