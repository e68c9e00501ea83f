"""Hostile publishes, retained and not, while a fleet runs: the bridge stays up, every hostile message is a
dead letter with a reason, every good reading arrives, and a restarted bridge does not meet the junk again."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.bridge import Bridge
from apt_energy.bridge.routing import MESSAGE_SIZE_LIMIT
from apt_energy.config import Settings
from apt_energy.core.mqtt import MqttLogin
from apt_energy.edge import Ledger

from tests.bridge.support import Running, as_ledger, expected_of, fleet_of, kafka_readings, ledger_count, spread
from tests.kafka_helpers import consume, headers
from tests.mqtt_helpers import wait_for

pytestmark = pytest.mark.integration

HOURS = 48


def hostile(p: str, first: int) -> dict[str, tuple[str, bytes, str]]:
    """Each class of hostile input: name → (topic, payload, reason class). Every message has a topic of its
    own (flat ``first``, ``first + 1``, ...): a retained message replaces the one before it on its topic."""
    def reading(unit: int, **extra: object) -> bytes:
        return json.dumps({"device_id": f"hanbit-01-{unit}", "meter": "water", "seq": 0, "ts": "2024-03-01T01:00:00Z",
                           "interval_s": 3600, "value": 0.01, "total": 0.01, "unit": "m³", **extra}).encode()

    u = range(first, first + 20)
    return {
        "huge_building_level": (f"{p}/hanbit/{u[0]}{'9' * 5000}/101/status", b'{"state": "online"}', "bad_topic"),
        "long_topic": (f"{p}/hanbit/01/{u[1]}/{'x' * 60000}", b"{}", "bad_topic"),
        "outside_the_scheme": (f"{p}/{u[2]}", reading(u[2]), "bad_topic"),
        "deep_json": (f"{p}/hanbit/01/{u[3]}/water/reading", b"[" * 2000 + b"]" * 2000, "too_deep"),
        "oversized": (f"{p}/hanbit/01/{u[4]}/water/reading", reading(u[4], pad="x" * 200_000), "too_large"),
        "binary": (f"{p}/hanbit/01/{u[5]}/water/reading", bytes(range(256)) * 4, "not_utf8"),
        "nan": (f"{p}/hanbit/01/{u[6]}/water/reading", reading(u[6], value=float("nan")), "not_finite"),
        "duplicate_keys": (f"{p}/hanbit/01/{u[7]}/water/reading",
                           f'{{"device_id": "x", "device_id": "hanbit-01-{u[7]}", "meter": "water"}}'.encode(),
                           "duplicate_key"),
        "junk_status": (f"{p}/hanbit/01/{u[8]}/status", b"<html>offline</html>", "not_json"),
        "array_meta": (f"{p}/hanbit/01/{u[9]}/meta", b"[1, 2, 3]", "not_object"),
        "other_device": (f"{p}/hanbit/01/{u[10]}/water/reading", reading(u[11]), "device_mismatch"),
    }


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        # As the admin: a device's own identity may only use its own topics, and this corpus also aims at
        # topics no device may publish to (the broker's ACL is tested in tests/security/).
        MqttLogin.from_settings(settings, "admin").apply(self.client)
        self.client.connect(settings.mqtt.host, settings.mqtt.port)
        self.client.loop_start()

    def send(self, batch: dict[str, tuple[str, bytes, str]], *, retain: bool, qos: int = 1) -> None:
        for topic, payload, _ in batch.values():
            info = self.client.publish(topic, payload, qos=qos, retain=retain)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS
            info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def refused_by_the_broker(settings: Settings, topic: str) -> None:
    """Over Mosquitto's message_size_limit: the broker drops it (and disconnects an MQTT v5 sender)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    gone = threading.Event()
    client.on_disconnect = lambda *a: gone.set()
    MqttLogin.from_settings(settings, "admin").apply(client)
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    client.publish(topic, b"x" * (MESSAGE_SIZE_LIMIT + 1), qos=1)
    assert gone.wait(10), "the broker took a payload over its limit"
    client.loop_stop()


def test_hostile_publishes_become_dead_letters_while_every_good_reading_arrives(
        pipeline_settings: Settings, tmp_path: Path) -> None:
    s = pipeline_settings
    p = s.mqtt.topic_prefix
    before, live, live_retained = hostile(p, 9100), hostile(p, 9200), hostile(p, 9300)
    qos0 = {"qos0_junk": (f"{p}/hanbit/01/9401/water/reading", b"not json at all", "not_json")}
    pub = Publisher(s)
    pub.send(before, retain=True)            # waiting for whoever subscribes next: a fresh bridge session
    bridge = Running(Bridge.from_settings(s))
    households = spread(s, 6)
    ledger = tmp_path / "ledger.json"
    try:
        wait_for(lambda: bridge.target.source.subscribed, 20, "bridge subscribed")
        fleet = Running(fleet_of(s, households, HOURS, speed=3600 * 4, ledger=ledger))   # ~12 s of publishing
        pub.send(live, retain=False)
        pub.send(live_retained, retain=True)
        pub.send(qos0, retain=False, qos=0)
        refused_by_the_broker(s, f"{p}/hanbit/01/9500/water/reading")
        fleet.join(120)
        assert bridge.thread.is_alive(), "the bridge stopped"
        want_dead = len(before) + len(live) + len(live_retained) + len(qos0)
        dead = consume(s, s.kafka.dead_letter_topic, until=want_dead, timeout=60, idle=2.0)
        got = kafka_readings(s, ledger_count(ledger), timeout=60)
        wait_for(lambda: bridge.target.stats.in_flight == 0, 20, "everything acknowledged")
    finally:
        bridge.stop()
        pub.close()

    # every hostile message is a dead letter, once, with its reason; nothing else is
    seen: dict[bytes, list[tuple[str, dict[str, bytes], bytes]]] = {}
    for m in dead:
        h = headers(m)
        seen.setdefault(h["mqtt.topic"], []).append((h["error.reason"].decode(), h, m.value()))
    batches = [(before, "1"), (live, "0"), (live_retained, "0"), (qos0, "0")]
    for batch, retained in batches:
        for name, (topic, payload, reason) in batch.items():
            sent = topic.encode()[:512]
            assert len(seen.get(sent, [])) == 1, f"{name}: {len(seen.get(sent, []))} dead letters"
            got_reason, h, value = seen[sent][0]
            assert got_reason.split(":")[0] == reason, f"{name}: {got_reason}"
            assert h["mqtt.retain"] == retained.encode()
            if len(payload) > s.bridge.max_payload_bytes:
                assert len(value) == s.bridge.max_payload_bytes and payload.startswith(value)
                assert int(h["error.original_bytes"]) == len(payload) and len(h["error.sha256"]) == 64
            else:
                assert value == payload
    assert len(dead) == sum(len(b) for b, _ in batches)
    assert not any(b"9500" in t for t in seen), "a payload over the broker's limit got through"

    # every good reading arrived: the same readings and the same monthly sums as the fleet's ledger
    assert set(got) == expected_of(s, households, HOURS)
    assert as_ledger(s, got) == Ledger.read(ledger)
    assert bridge.target.stats.dead_lettered == len(dead)

    # a restart meets none of it again: the session's subscription exists, so retained junk is not replayed
    again = Running(Bridge.from_settings(s))
    try:
        wait_for(lambda: again.target.source.subscribed, 20, "bridge subscribed again")
        late = Publisher(s)
        late.send(qos0, retain=False)        # a marker: once it is dead-lettered, anything before it was too
        late.close()
        wait_for(lambda: again.target.stats.dead_lettered >= 1, 30, "the marker")
    finally:
        again.stop()
    assert again.target.stats.dead_lettered == 1 and again.target.stats.received == 1
