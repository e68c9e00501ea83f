"""Test helpers around real MQTT: a recording subscriber, isolated settings, a private broker."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from apt_energy.config import Settings
from apt_energy.core.mqtt import MqttLogin
from apt_energy.stack.mosquitto import Mosquitto
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def isolated(settings: Settings, **mqtt_changes: object) -> Settings:
    """Settings with a uuid topic prefix so tests never see each other's devices. The test stack's broker
    grants every role its rights under ``<mqtt.test_prefix_root>/<one level>/…`` (tests/conftest.py)."""
    root = settings.mqtt.test_prefix_root
    assert root, "the test session sets mqtt.test_prefix_root (tests/conftest.py)"
    prefix = f"{root}/t{uuid.uuid4().hex[:10]}"
    return dataclasses.replace(settings, mqtt=dataclasses.replace(settings.mqtt, topic_prefix=prefix,
                                                                  **mqtt_changes))  # type: ignore[arg-type]


def private_broker(settings: Settings, tmp_path: Path) -> tuple[Settings, Mosquitto]:
    """A Mosquitto of our own (own port and run dir) that a test may restart without disturbing others."""
    s = dataclasses.replace(settings, mqtt=dataclasses.replace(settings.mqtt, port=free_port(), plain_port=free_port()),
                            stack=dataclasses.replace(settings.stack, run_dir=str(tmp_path / "run")))
    broker = Mosquitto.from_settings(s)
    broker.up()
    return s, broker


class Recorder:
    """Subscribes to ``<prefix>/#`` with a persistent session and records every message by topic."""

    def __init__(self, settings: Settings, *, client_id: str | None = None, topic: str | None = None) -> None:
        self.settings = settings
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        client_id = client_id or f"rec-{uuid.uuid4().hex}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.topic = topic or f"{settings.mqtt.topic_prefix}/#"
        MqttLogin.from_settings(settings, "admin").apply(self.client)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.reconnect_delay_set(0.2, 2)
        self.client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=False, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "recorder did not subscribe"

    def _on_connect(self, client, userdata, flags, reason, properties):  # type: ignore[no-untyped-def]
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self.lock:
            self.messages[msg.topic].append(msg.payload)

    def readings(self) -> dict[tuple[str, str], dict[int, dict[str, object]]]:
        """(device, meter) → seq → reading, duplicates collapsed."""
        out: dict[tuple[str, str], dict[int, dict[str, object]]] = defaultdict(dict)
        with self.lock:
            for topic, payloads in self.messages.items():
                if topic.endswith("/reading"):
                    for p in payloads:
                        r = json.loads(p)
                        out[(r["device_id"], r["meter"])][r["seq"]] = r
        return out

    def last_json(self, topic_suffix: str) -> dict[str, dict[str, object]]:
        with self.lock:
            return {t: json.loads(p[-1]) for t, p in self.messages.items() if t.endswith(topic_suffix) and p}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
