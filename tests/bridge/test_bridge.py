"""The bridge against the real Mosquitto and Kafka: nothing missing, whatever fails."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from apt_energy.bridge import Bridge
from apt_energy.config import Settings
from apt_energy.core.mqtt import MqttLogin
from apt_energy.edge import Fleet, FleetOptions
from apt_energy.stack import NativeStack

from tests.bridge.support import START, Running
from tests.conftest import env_for
from tests.kafka_helpers import consume, headers
from tests.mqtt_helpers import wait_for

pytestmark = pytest.mark.integration


def fleet(settings: Settings, n: int, hours: int, speed: float = 0.0) -> Fleet:
    return Fleet.from_settings(settings, settings.complex.households()[:n],
                 FleetOptions(start=START, until=START + timedelta(hours=hours), interval_s=3600, speed=speed,
                              drain_timeout_s=120))


def expected(settings: Settings, n: int, hours: int) -> set[tuple[str, str, int]]:
    return {(h.device_id, m, s) for h in settings.complex.households()[:n] for m in settings.energy
            for s in range(hours)}


def in_kafka(settings: Settings, want: int, timeout: float = 90, idle: float = 1.0) -> set[tuple[str, str, int]]:
    msgs = consume(settings, settings.kafka.readings_topic, until=want, timeout=timeout, idle=idle)
    out = set()
    for m in msgs:
        r = json.loads(m.value())
        assert m.key() == r["device_id"].encode()
        out.add((r["device_id"], r["meter"], r["seq"]))
    return out


def test_every_qos1_reading_reaches_kafka_with_mqtt_metadata(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    bridge = Running(Bridge.from_settings(s))
    try:
        wait_for(lambda: bridge.target.source.connected, 10, "bridge connected")
        fleet(s, 20, 24).run()
        assert in_kafka(s, 20 * 24 * 3) == expected(s, 20, 24)
        wait_for(lambda: bridge.target.stats.in_flight == 0 and bridge.target.stats.acked >= 20 * 24 * 3, 20,
                 "everything acknowledged")
    finally:
        bridge.stop()
    one = consume(s, s.kafka.readings_topic, until=1)[0]
    h = headers(one)
    assert h["mqtt.topic"].decode().startswith(s.mqtt.topic_prefix + "/") and h["mqtt.qos"] == b"1"
    assert {"mqtt.retain", "mqtt.dup", "bridge.received_ms", "bridge.id"} <= set(h)
    devices = consume(s, s.kafka.devices_topic, until=40, timeout=20)
    assert {m.key().decode().rsplit("/", 1)[1] for m in devices} == {"meta", "status"}


def test_bridge_killed_with_sigkill_and_restarted_loses_nothing(pipeline_settings: Settings) -> None:
    s = pipeline_settings
    argv = [sys.executable, "-m", "apt_energy.bridge"]
    first = subprocess.Popen(argv, env=env_for(s), stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.0)
        f = Running(fleet(s, 20, 96, speed=3600 * 12))    # ~8 s of publishing
        time.sleep(3.0)
        first.kill()                                       # kill -9 mid-stream
        first.wait(10)
        time.sleep(1.0)                                    # the broker queues for the absent session
        second = subprocess.Popen(argv, env=env_for(s), stderr=subprocess.DEVNULL)
        try:
            f.join(120)
            assert f.target.acked == 20 * 96 * 3
            assert in_kafka(s, 20 * 96 * 3) == expected(s, 20, 96)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        first.kill()


def test_kafka_down_for_30s_mid_stream_loses_nothing_and_the_bridge_recovers(
        pipeline_settings: Settings, native_stack: NativeStack) -> None:
    s = pipeline_settings
    bridge = Running(Bridge.from_settings(s))
    try:
        wait_for(lambda: bridge.target.source.connected, 10, "bridge connected")
        f = Running(fleet(s, 10, 240, speed=3600 * 4))   # ~60 s of publishing
        wait_for(lambda: bridge.target.stats.forwarded > 300, 30, "first readings in Kafka")
        native_stack.kafka.down()
        stalled_at = bridge.target.stats.forwarded
        time.sleep(30)
        assert bridge.target.stats.forwarded == stalled_at  # nothing confirmed while Kafka is down ...
        assert bridge.target.stats.received > stalled_at    # ... but the bridge kept reading, up to its bound
        native_stack.kafka.up()
        f.join(180)
        assert in_kafka(s, 10 * 240 * 3, timeout=120) == expected(s, 10, 240)
    finally:
        if not native_stack.kafka.status().healthy:
            native_stack.kafka.up()
        bridge.stop()


def test_two_bridges_in_one_share_group_split_the_work_and_miss_nothing(pipeline_settings: Settings) -> None:
    """The opt-in layout (bridge.shared_subscription: true): the broker spreads messages over the group."""
    s = dataclasses.replace(pipeline_settings, bridge=dataclasses.replace(pipeline_settings.bridge,
                                                                          shared_subscription=True))
    other = dataclasses.replace(s, bridge=dataclasses.replace(s.bridge, client_id=s.bridge.client_id + "-b"))
    a, b = Running(Bridge.from_settings(s)), Running(Bridge.from_settings(other))
    try:
        wait_for(lambda: a.target.source.connected and b.target.source.connected, 10, "bridges connected")
        fleet(s, 20, 24).run()
        assert in_kafka(s, 20 * 24 * 3) == expected(s, 20, 24)
        wait_for(lambda: a.target.stats.in_flight == 0 and b.target.stats.in_flight == 0, 20, "acks")
    finally:
        a.stop()
        b.stop()
    assert a.target.stats.forwarded > 100 and b.target.stats.forwarded > 100


def test_each_bad_input_class_lands_in_the_dead_letter_topic_while_good_data_flows(
        pipeline_settings: Settings) -> None:
    s = pipeline_settings
    p = s.mqtt.topic_prefix
    bridge = Running(Bridge.from_settings(s))
    good = {"device_id": "hanbit-01-101", "meter": "water", "seq": 0, "ts": "2024-01-01T01:00:00Z",
            "interval_s": 3600, "value": 0.01, "total": 0.01, "unit": "m³"}
    bad = {
        "not_json": (f"{p}/hanbit/01/101/water/reading", b"{not json"),
        "not_object": (f"{p}/hanbit/01/101/water/reading", b"[1, 2]"),
        "too_large": (f"{p}/hanbit/01/101/water/reading", json.dumps({**good, "pad": "x" * 5000}).encode()),
        "bad_topic": (f"{p}/hanbit/01/101/water", json.dumps(good).encode()),
        "device_mismatch": (f"{p}/hanbit/01/102/water/reading", json.dumps(good).encode()),
    }
    try:
        wait_for(lambda: bridge.target.source.connected, 10, "bridge connected")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        MqttLogin.from_settings(s, "admin").apply(pub)  # hostile traffic is injected as the admin
        pub.connect(s.mqtt.host, s.mqtt.port)
        pub.loop_start()
        for i, (topic, payload) in enumerate(bad.values()):
            good_topic = f"{p}/hanbit/01/101/water/reading"
            pub.publish(good_topic, json.dumps({**good, "seq": 2 * i}), qos=1).wait_for_publish(5)
            pub.publish(topic, payload, qos=1).wait_for_publish(5)
        pub.publish(f"{p}/hanbit/01/101/water/reading", json.dumps({**good, "seq": 99}), qos=1).wait_for_publish(5)
        pub.loop_stop()
        dead = consume(s, s.kafka.dead_letter_topic, until=len(bad), timeout=30, idle=1.0)
        goods = consume(s, s.kafka.readings_topic, until=len(bad) + 1, timeout=30, idle=1.0)
    finally:
        bridge.stop()
    reasons = sorted(headers(m)["error.reason"].decode().split(":")[0] for m in dead)
    assert reasons == sorted(bad)
    assert all(headers(m)["mqtt.topic"] for m in dead)
    assert sorted(json.loads(m.value())["seq"] for m in goods) == [0, 2, 4, 6, 8, 99]
    assert bridge.target.stats.dead_lettered == len(bad)


def test_a_session_left_subscribed_by_the_shared_layout_forwards_each_reading_once_after_the_switch(
        pipeline_settings: Settings) -> None:
    """Same client id, shared subscription before, plain now: the old ``$share`` filter is unsubscribed on
    connect, or the broker would deliver every message twice (once per matching subscription)."""
    s = pipeline_settings
    shared = dataclasses.replace(s, bridge=dataclasses.replace(s.bridge, shared_subscription=True))
    before = Running(Bridge.from_settings(shared))
    wait_for(lambda: before.target.source.subscribed, 20, "shared subscription")
    before.stop()
    now = Running(Bridge.from_settings(s))
    try:
        wait_for(lambda: now.target.source.subscribed, 20, "plain subscription")
        fleet(s, 4, 12).run()
        msgs = consume(s, s.kafka.readings_topic, until=4 * 12 * 3, timeout=60, idle=2.0)
    finally:
        now.stop()
    assert len(msgs) == 4 * 12 * 3
    assert {(json.loads(m.value())["device_id"], json.loads(m.value())["seq"]) for m in msgs} == {
        (h.device_id, q) for h in s.complex.households()[:4] for q in range(12)}
