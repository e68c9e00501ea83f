"""Mosquitto crash (kill -9) mid-run: how many readings are lost, per autosave setting, against a clean
restart (SIGTERM) in the same run.

Each scenario: a private Mosquitto, one bridge, 22 households (two per building) publishing 96 hourly
readings each at 12 simulated hours per second (~800 readings/s, ~8 s); once traffic flows the broker is
stopped (SIGTERM) or killed (SIGKILL), restarted a second later, the fleet finishes, and the readings in
Kafka are compared with what the fleet published. What a crash loses is what Mosquitto had acknowledged to
devices but neither saved nor delivered to the bridge, so it depends on timing: several runs per setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.bridge import Bridge
from apt_energy.config import Settings
from apt_energy.edge import Fleet, FleetOptions
from apt_energy.stack import mosquitto as mosquitto_module
from apt_energy.stack.kafka import Kafka, ensure_acls
from apt_energy.stack.mosquitto import Mosquitto
from apt_energy.stack.process import alive, read_pid
from confluent_kafka import Consumer

from apt_energy.kafka import kafka_client
from bench.common import report, stack_settings

START = datetime(2024, 3, 1, tzinfo=UTC)
HOURS = 96
ORIGINAL = mosquitto_module.render_config


def with_autosave(lines: list[str]) -> None:
    def render(**kwargs: object) -> str:
        text = ORIGINAL(**kwargs)  # type: ignore[arg-type]
        kept = [x for x in text.splitlines() if not x.startswith("autosave_")]
        return "\n".join(kept + lines) + "\n"
    mosquitto_module.render_config = render  # type: ignore[assignment]


def isolated(base: Settings, kafka: Kafka, run_dir: Path) -> Settings:
    import socket

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    tag = uuid.uuid4().hex[:8]
    names = [f"bench.crash.{tag}.{k}" for k in ("readings", "devices", "dlq")]
    kafka.create_topics({n: {} for n in names}, partitions=6)
    settings = dataclasses.replace(
        base, mqtt=dataclasses.replace(base.mqtt, port=free_port(), plain_port=free_port(), topic_prefix=f"crash{tag}"),
        kafka=dataclasses.replace(base.kafka, readings_topic=names[0], devices_topic=names[1],
                                  dead_letter_topic=names[2]),
        bridge=dataclasses.replace(base.bridge, client_id=f"crash-bridge-{tag}"),
        stack=dataclasses.replace(base.stack, run_dir=str(run_dir)))
    ensure_acls(settings)
    return settings


def readings_in_kafka(s: Settings, timeout: float = 60) -> set[tuple[str, str, int]]:
    c = Consumer(kafka_client(s, "admin").config(**{"group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest",
                                                    "enable.auto.commit": False}))
    c.subscribe([s.kafka.readings_topic])
    out: set[tuple[str, str, int]] = set()
    quiet = time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and time.monotonic() - quiet < 3:
        for m in c.consume(5000, 0.5):
            if m.error() is None:
                r = json.loads(m.value())
                out.add((r["device_id"], r["meter"], r["seq"]))
                quiet = time.monotonic()
    c.close()
    return out


def scenario(base: Settings, kafka: Kafka, how: str) -> tuple[int, int]:
    """(lost, published) for one run; ``how`` is ``term`` or ``kill``."""
    with tempfile.TemporaryDirectory() as tmp:
        s = isolated(base, kafka, Path(tmp))
        broker = Mosquitto(s)
        broker.up()
        by_building: dict[int, list] = {}  # type: ignore[type-arg]
        for h in s.complex.households():
            by_building.setdefault(h.building, []).append(h)
        households = [col[k] for k in range(2) for col in by_building.values()]
        bridge = Bridge.from_settings(s)
        bt = threading.Thread(target=bridge.run, daemon=True)
        bt.start()
        try:
            while not bridge.source.subscribed:
                time.sleep(0.05)
            fleet = Fleet(s, households, FleetOptions(start=START, until=START + timedelta(hours=HOURS),
                                                      interval_s=3600, speed=3600 * 12, drain_timeout_s=120))
            ft = threading.Thread(target=fleet.run, daemon=True)
            ft.start()
            while bridge.stats.forwarded < 1500:
                time.sleep(0.02)
            if how == "kill":
                pid = read_pid(broker.pid_file)
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                while alive(pid):
                    time.sleep(0.02)
                broker.pid_file.unlink(missing_ok=True)
            else:
                broker.down()
            time.sleep(1.0)
            broker.up()
            ft.join(300)
            time.sleep(2.0)
            want = {(h.device_id, m, q) for h in households for m in s.energy for q in range(HOURS)}
            got = readings_in_kafka(s)
            return len(want - got), len(want)
        finally:
            bridge.stop()
            bt.join(60)
            broker.down()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs per setting")
    args = ap.parse_args()
    base = stack_settings()
    kafka = Kafka(base)
    settings = {
        "autosave every 30 s (before)": ["autosave_interval 30"],
        "autosave every 1 s (now)": ["autosave_interval 1"],
        "autosave after every 100 changes": ["autosave_on_changes true", "autosave_interval 100"],
    }
    figures: dict[str, float | str] = {}
    term = [scenario(base, kafka, "term") for _ in range(args.runs)]
    figures["SIGTERM + restart: readings lost (all runs)"] = float(sum(lost for lost, _ in term))
    for name, lines in settings.items():
        with_autosave(lines)
        runs = [scenario(base, kafka, "kill") for _ in range(args.runs)]
        total = sum(n for _, n in runs)
        figures[f"kill -9, {name}: lost per run"] = " ".join(str(lost) for lost, _ in runs)
        figures[f"kill -9, {name}: share lost"] = sum(lost for lost, _ in runs) / total
    mosquitto_module.render_config = ORIGINAL  # type: ignore[assignment]
    report("broker_crash", figures)


if __name__ == "__main__":
    main()
