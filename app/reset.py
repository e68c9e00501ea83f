"""A reproducible run: empty pipeline tables, fresh Kafka topics and Spark checkpoints, no bridge session."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt
from apt_energy.config import Settings
from apt_energy.core.mqtt import MqttLogin, MqttRole
from apt_energy.database import connect
from apt_energy.stack.kafka import KafkaAdmin, reset_topics

logger = logging.getLogger(__name__)

__all__ = ["PIPELINE_TABLES", "forget_bridge_session", "mqtt_session", "reset_pipeline"]

PIPELINE_TABLES = ("alert_notifications", "alert_events", "alerts", "quarantine", "meter_readings", "energy_usage",
                   "devices")


def reset_pipeline(settings: Settings) -> list[str]:
    """Truncate the pipeline's tables, recreate its topics, drop its checkpoints and the bridge's MQTT
    session. Returns the topics. The services must not be running."""
    with connect(settings, role="owner") as conn:  # TRUNCATE is the owner's, never the pipeline's
        conn.execute(f"TRUNCATE {', '.join(PIPELINE_TABLES)} RESTART IDENTITY")
        conn.commit()
    topics: list[str] = list(reset_topics(KafkaAdmin.from_settings(settings)))
    forget_bridge_session(settings)
    shutil.rmtree(settings.path(settings.spark.checkpoint_dir), ignore_errors=True)
    return topics


@contextmanager
def mqtt_session(settings: Settings, client_id: str, role: MqttRole) -> Iterator[mqtt.Client]:
    """A short-lived MQTT v5 client of ``role`` with a clean start, connected (or given up on after 5 s)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(settings, role).apply(client)
    client.connect(settings.mqtt.host, settings.mqtt.port, clean_start=True)
    client.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


def forget_bridge_session(settings: Settings) -> None:
    """The bridge's persistent MQTT session may still queue messages from an earlier run: connecting
    once with a clean start makes the broker discard it."""
    with mqtt_session(settings, settings.bridge.client_id, "bridge"):
        pass
