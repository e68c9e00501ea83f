from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.core.mqtt import MqttLogin
from apt_energy.database import connect
from apt_energy.stack import NativeStack
from confluent_kafka import Consumer, Producer

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_reports_every_service_healthy(native_stack: NativeStack) -> None:
    statuses = {s.name: s for s in native_stack.status()}
    assert set(statuses) == {"mosquitto", "postgresql", "kafka"}
    assert all(s.healthy for s in statuses.values()), statuses


def test_kafka_produce_consume_round_trip(stack_settings: Settings, topic_factory) -> None:  # type: ignore[no-untyped-def]
    topic = topic_factory("roundtrip", partitions=1)
    payload = uuid.uuid4().bytes
    admin = KafkaClient.from_settings(stack_settings, "admin")
    producer = Producer(admin.config(**{"enable.idempotence": True}))
    producer.produce(topic, key=b"k", value=payload)
    assert producer.flush(15) == 0
    consumer = Consumer(admin.config(**{"group.id": topic, "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    try:
        for _ in range(30):
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                assert msg.value() == payload
                return
        pytest.fail("message not consumed within 30 s")
    finally:
        consumer.close()


def test_mqtt_qos1_round_trip(stack_settings: Settings) -> None:
    topic = f"test/{uuid.uuid4().hex}"
    got = threading.Event()
    received: list[tuple[bytes, int]] = []

    def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
        received.append((msg.payload, msg.qos))
        got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    MqttLogin.from_settings(stack_settings, "admin").apply(sub)
    sub.connect(stack_settings.mqtt.host, stack_settings.mqtt.port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(stack_settings, "admin").apply(pub)
    pub.connect(stack_settings.mqtt.host, stack_settings.mqtt.port)
    pub.loop_start()
    try:
        import time
        time.sleep(0.3)  # let the SUBACK land before publishing
        info = pub.publish(topic, b"hello", qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
        assert got.wait(5)
        assert received == [(b"hello", 1)]
    finally:
        pub.loop_stop()
        sub.loop_stop()


def test_sql_query_counts_840_households(stack_settings: Settings) -> None:
    with connect(stack_settings) as conn:
        assert conn.execute("SELECT count(*) FROM households").fetchone() == (840,)


def test_second_stack_starts_and_down_stops_only_what_it_started(native_stack: NativeStack,
                                                                 tmp_path: Path) -> None:
    """A stack in another run dir on other ports: up, healthy, down → stopped; the main one is untouched."""
    s = native_stack.settings
    other = dataclasses.replace(
        s,
        mqtt=dataclasses.replace(s.mqtt, port=free_port(), plain_port=free_port()),
        postgres=dataclasses.replace(s.postgres, port=free_port()),
        kafka=dataclasses.replace(s.kafka, bootstrap=f"127.0.0.1:{free_port()}"),
        stack=dataclasses.replace(s.stack, run_dir=str(tmp_path / "run"), kafka_controller_port=free_port(),
                                  kafka_heap="256m"),
    )
    second = NativeStack.from_settings(other)
    try:
        second.up()
        assert all(st.healthy for st in second.status())
    finally:
        second.down()
    assert [st.state for st in second.status()] == ["stopped"] * 3
    assert all(st.healthy for st in native_stack.status())


def test_stack_status_cli_lists_services(native_stack: NativeStack) -> None:
    result = subprocess.run([sys.executable, "-m", "apt_energy.stack", "status"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("mosquitto", "postgresql", "kafka"):
        assert any(line.startswith(name) and "healthy" in line for line in result.stdout.splitlines())


def test_stack_status_json_is_one_document_scripts_can_read(native_stack: NativeStack) -> None:
    result = subprocess.run([sys.executable, "-m", "apt_energy.stack", "status", "--json"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    services = {s["name"]: s for s in json.loads(result.stdout)}
    assert set(services) == {"mosquitto", "postgresql", "kafka"}
    assert all(s["healthy"] and s["state"] == "healthy" and s["pid"] for s in services.values())


def test_kafka_cluster_ids_never_look_like_an_option() -> None:
    from apt_energy.stack.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(2000)]  # ~1 in 64 raw draws starts with '-'
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
