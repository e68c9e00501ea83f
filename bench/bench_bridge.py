"""Bridge: sustained QoS 1 rate MQTT → Kafka with zero loss, against a bare paho subscriber.

Both drain the same backlog the same way: a persistent session is created and subscribed, N QoS 1
messages are published into it by `mosquitto_pub --repeat`, then the consumer connects and the clock runs
until the last one is in (the bare subscriber only counts; the bridge must also have Kafka confirm
every message and acknowledge it). Added latency is measured separately at a steady rate: Kafka's
log-append time minus the bridge's MQTT receive time (header ``bridge.received_ms``).
The baseline, stated: plain paho (its own network thread, automatic PUBACKs) with the bridge's identity,
TLS, Receive Maximum and persistent session, draining the same number of the same messages; it does
nothing with them, the bridge routes, produces with ``acks=all`` and acknowledges after delivery.
Goals (issue #15): ≥ 1.0 × the bare subscriber, 0 missing, p99 added latency ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from apt_energy.bridge import Bridge
from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.core.mqtt import MqttLogin
from apt_energy.stack.kafka import Kafka, KafkaAdmin, ensure_acls
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.common import TEST_PREFIX_ROOT, mosquitto_client_env, percentile, report, stack_settings
from bench.figure import Figure


def payload(i: int) -> bytes:
    return json.dumps({"v": 1, "device_id": "hanbit-01-101", "meter": "water", "seq": i, "ts": "2024-07-01T01:00:00Z",
                       "interval_s": 3600, "value": 0.0213, "total": 1.2345, "unit": "m³"}).encode()


def load(settings: Settings, n: int) -> None:
    """``--repeat`` waits for every PUBACK; ``mosquitto_pub -l`` exits with messages unsent."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["mosquitto_pub", "-h", settings.mqtt.host, "-p", str(settings.mqtt.port), "-q", "1",
                        "-M", "200", "-m", payload(0).decode(), "--repeat", str(n),
                        "-t", f"{settings.mqtt.topic_prefix}/hanbit/01/101/water/reading"], check=True,
                       env=mosquitto_client_env(settings, "admin", Path(tmp)))


def bare_subscriber_rate(settings: Settings, n: int) -> float:
    got = threading.Event()
    count = 0

    def on_message(c, u, m):  # type: ignore[no-untyped-def]
        nonlocal count
        count += 1
        if count >= n:
            got.set()

    cid = f"bare-{uuid.uuid4().hex[:8]}"
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = min(settings.bridge.max_in_flight, 65535)  # the bridge's flow-control window
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(settings, "bridge").apply(c)  # the same identity and TLS as the bridge: a fair baseline
    c.connect(settings.mqtt.host, settings.mqtt.port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe(f"{settings.mqtt.topic_prefix}/#", qos=1)
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    load(settings, n)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(settings, "bridge").apply(c)
    c.on_message = on_message
    c.connect(settings.mqtt.host, settings.mqtt.port, clean_start=False, properties=props)
    began = time.monotonic()
    c.loop_start()
    got.wait(600)
    elapsed = time.monotonic() - began
    c.disconnect()
    c.loop_stop()
    return n / elapsed


def bridge_rate(settings: Settings, n: int) -> tuple[float, Bridge]:
    first = Bridge.from_settings(settings)
    t = threading.Thread(target=first.run)
    t.start()
    while not first.source.subscribed:
        time.sleep(0.05)
    first.stop()
    t.join()
    load(settings, n)
    bridge = Bridge.from_settings(settings)
    began = time.monotonic()
    t = threading.Thread(target=bridge.run)
    t.start()
    while bridge.stats.acked < n:
        time.sleep(0.01)
    elapsed = time.monotonic() - began
    bridge.stop()
    t.join()
    return n / elapsed, bridge


def added_latency(settings: Settings, rate: int, seconds: int) -> list[float]:
    bridge = Bridge.from_settings(settings)
    t = threading.Thread(target=bridge.run)
    t.start()
    while not bridge.source.subscribed:
        time.sleep(0.05)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(settings, "admin").apply(pub)
    pub.connect(settings.mqtt.host, settings.mqtt.port)
    pub.loop_start()
    topic = f"{settings.mqtt.topic_prefix}/hanbit/01/101/water/reading"
    began = time.monotonic()
    for i in range(rate * seconds):
        pub.publish(topic, payload(i), qos=1)
        ahead = began + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    time.sleep(2)
    pub.loop_stop()
    bridge.stop()
    t.join()
    consumer = Consumer(KafkaClient.from_settings(settings, "admin").config(**{"group.id": uuid.uuid4().hex,
                                                                  "enable.auto.commit": False}))
    # Partitions assigned directly, from the beginning: a group join on a busy machine has kept a
    # subscribing consumer empty past the deadline here, leaving the latency unmeasured.
    topic = settings.kafka.readings_topic
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[float] = []
    deadline = time.monotonic() + 60
    while len(out) < rate * seconds and time.monotonic() < deadline:
        for m in consumer.consume(10000, 1.0):
            if m.error() is None:
                received = int(dict(m.headers())["bridge.received_ms"])
                out.append(m.timestamp()[1] - received)
    consumer.close()
    return out


def isolated(base: Settings, tag: str, kafka: Kafka) -> Settings:
    topics = {f"bench.{tag}.readings": {"message.timestamp.type": "LogAppendTime"},
              f"bench.{tag}.devices": {}, f"bench.{tag}.dlq": {}}
    kafka.create_topics(topics, partitions=6)
    names = list(topics)
    settings = dataclasses.replace(
        base, mqtt=dataclasses.replace(base.mqtt, topic_prefix=f"{TEST_PREFIX_ROOT}/bench{tag}"),
        kafka=dataclasses.replace(base.kafka, readings_topic=names[0], devices_topic=names[1],
                                  dead_letter_topic=names[2]),
        bridge=dataclasses.replace(base.bridge, group=f"g{tag}", client_id=f"bench-bridge-{tag}"))
    ensure_acls(KafkaAdmin.from_settings(settings))  # the bridge principal may write the bench's topics
    return settings


def figures(messages: int = 60_000, latency_rate: int = 2000, rounds: int = 2) -> list[Figure]:
    """The bridge against a bare paho subscriber draining the same backlog, then its added latency.
    Rounds alternate (bare, bridge, bare, bridge, …) and each side keeps its best, so a load swing on a
    shared machine does not decide the ratio."""
    base = stack_settings()
    kafka = Kafka.from_settings(base)
    bare = rate = 0.0
    lost = 0
    for _ in range(rounds):
        bare = max(bare, bare_subscriber_rate(isolated(base, uuid.uuid4().hex[:6], kafka), messages))
        this, bridge = bridge_rate(isolated(base, uuid.uuid4().hex[:6], kafka), messages)
        rate = max(rate, this)
        lost += messages - bridge.stats.forwarded
    lat = added_latency(isolated(base, uuid.uuid4().hex[:6], kafka), latency_rate, 10)
    report("bridge", {
        "messages (per round)": float(messages),
        "rounds (best of each)": float(rounds),
        "bare paho subscriber (msg/s)": bare,
        "bridge MQTT → Kafka, acked after delivery (msg/s)": rate,
        "ratio bridge / bare subscriber": rate / bare,
        "messages missing in Kafka": float(lost),
        f"added latency p50 at {latency_rate} msg/s (ms)": percentile(lat, 50),
        f"added latency p99 at {latency_rate} msg/s (ms)": percentile(lat, 99),
    })
    return [
        Figure("MQTT → Kafka, acked after delivery", rate, "msg/s", "bare paho subscriber", bare, goal=1.0),
        Figure("messages missing in Kafka", float(lost), "msgs", "—", float("nan"), target=0.0,
               higher_is_better=False),
        Figure(f"p99 added latency at {latency_rate} msg/s", percentile(lat, 99), "ms", "—", float("nan"),
               target=50.0, higher_is_better=False, note=f"p50 {percentile(lat, 50):.0f} ms"),
    ]


def main() -> None:
    from bench.report import Outcome, table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=60_000)
    ap.add_argument("--latency-rate", type=int, default=2000, help="msg/s for the latency phase")
    args = ap.parse_args()
    print(table([Outcome("bridge", tuple(figures(args.messages, args.latency_rate)))]))


if __name__ == "__main__":
    main()
