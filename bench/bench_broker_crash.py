"""Mosquitto crash (kill -9) mid-run: how many readings are lost, per autosave setting, against a clean
restart (SIGTERM) in the same run; and what a save costs as the broker's state grows.

Each scenario: a private Mosquitto, one bridge, 22 households (two per building) publishing 96 hourly
readings each at 12 simulated hours per second (~800 readings/s, ~8 s); once traffic flows the broker is
stopped (SIGTERM) or killed (SIGKILL), restarted a second later, the fleet finishes, and the readings in
Kafka are compared with what the fleet published. What a crash loses is what Mosquitto had acknowledged to
devices but neither saved nor delivered to the bridge, so it depends on timing: several runs per setting.

Save cost (``--save-cost``): Mosquitto 2.0 writes its whole database at every save, in its one thread, and
serves nobody meanwhile. A private broker is filled with 100,000 retained topics (a status message per
household at 100,000 households) and a retired persistent session holding N queued readings (a bridge
outage: 10 minutes at the demo's rate is ~5.3 M); then it is told to save (SIGUSR1) while a client
measures its publish round trip: the worst round trip during the save is the stall, against the worst
one in the same time without a save. The stall divided by ``autosave_interval`` is the share of time the
broker stands still.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apt_energy.bridge import Bridge
from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.edge import Fleet, FleetOptions
from apt_energy.stack import mosquitto as mosquitto_module
from apt_energy.stack.kafka import Kafka, KafkaAdmin, ensure_acls
from apt_energy.stack.mosquitto import AUTOSAVE_S, Mosquitto
from apt_energy.stack.process import alive, read_pid
from confluent_kafka import Consumer
from paho.mqtt import client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
    ensure_acls(KafkaAdmin.from_settings(settings))
    return settings


def readings_in_kafka(s: Settings, timeout: float = 60) -> set[tuple[str, str, int]]:
    c = Consumer(KafkaClient.from_settings(s, "admin").config(**{
        "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
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


def scenario(base: Settings, kafka: Kafka, how: str, *, saved_first_s: float = 0.0) -> tuple[int, int]:
    """(lost, published) for one run; ``how`` is ``term`` or ``kill``. ``saved_first_s``: wait this long
    after the bridge subscribed before traffic starts, so an autosave has written its session (a bridge
    that has been running a while); 0: the crash lands ~2 s into a brand-new session."""
    with tempfile.TemporaryDirectory() as tmp:
        s = isolated(base, kafka, Path(tmp))
        broker = Mosquitto.from_settings(s)
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
            time.sleep(saved_first_s)
            fleet = Fleet.from_settings(s, households, FleetOptions(start=START, until=START + timedelta(hours=HOURS),
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


# A reading as the edge writes it (~200 bytes): what a queued message costs the broker.
READING = (b'{"v":2,"device_id":"hanbit-101-1203","meter":"electricity","seq":123456,"ts":"2026-01-01T00:00:00Z",'
           b'"value":1.234,"unit":"kWh","interval_s":3600,"life":1700000000123,"register":12345.678}')


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _probe(port: int, client_id: str = "", *, clean: bool = True) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0 if clean else 2 * 86400
    c.connect("127.0.0.1", port, clean_start=clean, properties=props)
    c.loop_start()
    while not c.is_connected():
        time.sleep(0.01)
    return c


def _round_trip(c: mqtt.Client) -> float:
    t = time.perf_counter()
    c.publish("probe/rtt", b"1", qos=1).wait_for_publish(600)
    return time.perf_counter() - t


def _stored(c: mqtt.Client, port: int) -> int:
    """The broker's own count of messages it holds ($SYS, published every second here)."""
    got: list[int] = []
    time.sleep(2.5)           # $SYS is published every sys_interval: read a figure from after the fill
    probe = _probe(port)
    probe.on_message = lambda client, userdata, m: got.append(int(m.payload))
    probe.subscribe("$SYS/broker/store/messages/count")
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    probe.disconnect()
    probe.loop_stop()
    return got[0] if got else -1


def _fill(c: mqtt.Client, topic: str, n: int) -> None:
    """Queue ``n`` readings for the retired session. QoS 0 publishes with ``queue_qos0_messages`` are queued
    for an offline session like QoS 1 ones (one stored message each), at several times the rate."""
    for i in range(n):
        c.publish(topic, READING, qos=0)
        if i % 20_000 == 19_999:
            _round_trip(c)    # let the broker keep up: paho's own queue would otherwise hold them
    _round_trip(c)


def save_cost(retained: int, queued: int, *, saves: int = 3) -> dict[str, float]:
    """Stall of one save (s, median of ``saves``), the same-run baseline, the database's size and the RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        d, port = Path(tmp), _free_port()
        # Only the persistence lines matter here: anonymous loopback, no TLS, and no autosave of its own.
        (d / "mosquitto.conf").write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {d}/\n"
            "autosave_interval 86400\nmax_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 0\n"
            "queue_qos0_messages true\nsys_interval 1\n"
            f"log_dest file {d}/mosquitto.log\n" + ("user root\n" if os.geteuid() == 0 else ""))
        broker = subprocess.Popen(["mosquitto", "-c", str(d / "mosquitto.conf")])
        try:
            time.sleep(0.5)
            c = _probe(port)
            # one retained status per household: a topic each (the message store holds one per topic)
            for i in range(retained):
                c.publish(f"apt/hanbit/{i // 1000}/{i}/status", READING, qos=0, retain=True)
                if i % 5000 == 4999:
                    _round_trip(c)
            _round_trip(c)
            retired = _probe(port, "retired-bridge", clean=False)
            retired.subscribe("q/#", qos=1)
            time.sleep(0.5)
            retired.disconnect()
            retired.loop_stop()
            _fill(c, "q/hanbit/electricity/reading", queued)
            stored = _stored(c, port)

            def worst_round_trip(save: bool) -> float:
                if save:
                    os.kill(broker.pid, signal.SIGUSR1)
                end, worst = time.perf_counter() + 1.0 + queued / 200_000, 0.0
                while time.perf_counter() < end:
                    worst = max(worst, _round_trip(c))
                return worst

            base = sorted(worst_round_trip(False) for _ in range(saves))[saves // 2]
            stall = sorted(worst_round_trip(True) for _ in range(saves))[saves // 2]
            rss = next(int(x.split()[1]) for x in Path(f"/proc/{broker.pid}/status").read_text().splitlines()
                       if x.startswith("VmRSS:"))
            c.disconnect()
            return {"stall_s": stall, "baseline_s": base, "db_mb": (d / "mosquitto.db").stat().st_size / 1e6,
                    "rss_mb": rss / 1024, "stored": stored}
        finally:
            broker.terminate()
            broker.wait(60)


def save_figures(sizes: list[int], intervals: list[int]) -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    for queued in sizes:
        r = save_cost(100_000, queued)
        label = f"100k retained + {queued:,} queued"
        figures[f"save, {label}: messages the broker holds ($SYS)"] = int(r["stored"])
        figures[f"save, {label}: database MB"] = round(r["db_mb"], 1)
        figures[f"save, {label}: broker RSS MB"] = round(r["rss_mb"])
        figures[f"save, {label}: stall s (baseline worst round trip {r['baseline_s']:.3f} s)"] = round(r["stall_s"], 3)
        figures[f"save, {label}: stall / baseline"] = round(r["stall_s"] / max(r["baseline_s"], 1e-3), 1)
        for interval in intervals:
            figures[f"save, {label}: broker stalled at autosave_interval {interval}"] = (
                f"{min(1.0, r['stall_s'] / interval):.1%}")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3, help="runs per setting")
    ap.add_argument("--save-cost", action="store_true", help="only the save cost (no Kafka, no fleet)")
    ap.add_argument("--queued", default="0,1000000,5300000",
                    help="queued readings of the retired session per save-cost point (comma-separated)")
    args = ap.parse_args()
    sizes = [int(x) for x in args.queued.split(",")]
    intervals = [1, 10, 30, 60]
    if args.save_cost:
        report("broker_save", save_figures(sizes, intervals))
        return
    base = stack_settings()
    kafka = Kafka.from_settings(base)
    settings = {
        "autosave every 1 s (before)": ["autosave_interval 1"],
        f"autosave every {AUTOSAVE_S} s (now)": [f"autosave_interval {AUTOSAVE_S}"],
    }
    figures: dict[str, float | str] = {}
    term = [scenario(base, kafka, "term") for _ in range(args.runs)]
    figures["SIGTERM + restart: readings lost (all runs)"] = float(sum(lost for lost, _ in term))
    for name, lines in settings.items():
        with_autosave(lines)
        for when, wait in (("new session", 0.0), (f"session saved ({AUTOSAVE_S + 2} s old)", AUTOSAVE_S + 2.0)):
            runs = [scenario(base, kafka, "kill", saved_first_s=wait) for _ in range(args.runs)]
            total = sum(n for _, n in runs)
            figures[f"kill -9, {name}, {when}: lost per run"] = " ".join(str(lost) for lost, _ in runs)
            figures[f"kill -9, {name}, {when}: share lost"] = sum(lost for lost, _ in runs) / total
    mosquitto_module.render_config = ORIGINAL  # type: ignore[assignment]
    figures.update(save_figures(sizes, intervals))
    report("broker_crash", figures)


if __name__ == "__main__":
    main()
