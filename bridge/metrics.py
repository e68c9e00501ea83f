"""The bridge's counters and the broker's own ($SYS) figures as Prometheus samples, read at scrape time."""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from apt_energy.bridge.mqtt_source import MqttOptions
from apt_energy.bridge.stats import BridgeStats
from apt_energy.core.metrics import Sample

logger = logging.getLogger(__name__)

__all__ = ["BrokerSys", "bridge_samples"]

_COUNTERS = {
    "received": "MQTT messages received from the broker",
    "forwarded": "readings and device messages confirmed by Kafka",
    "dead_lettered": "messages sent to the dead-letter topic (with a reason)",
    "acked": "MQTT messages acknowledged to the broker (after Kafka delivery)",
    "duplicates_flagged": "redeliveries flagged DUP by the broker",
    "kafka_errors": "Kafka delivery errors (the message is produced again)",
    "reproduced": "messages produced again after a delivery failure",
    "reconnects": "reconnections to the broker",
}


def bridge_samples(stats: BridgeStats) -> list[Sample]:
    """``apt_bridge_*``: the bridge's counters, in-flight and whether its subscription is live."""
    out = [Sample(f"bridge_{k}", "counter", h, float(getattr(stats, k))) for k, h in _COUNTERS.items()]
    out.append(Sample("bridge_in_flight", "gauge", "MQTT messages received, not yet confirmed by Kafka",
                      float(stats.in_flight)))
    out.append(Sample("bridge_subscribed", "gauge", "1 while the bridge's subscription is live",
                      1.0 if stats.subscribed else 0.0))
    return out


# $SYS topic → (metric, help). Mosquitto publishes these every sys_interval (10 s by default).
SYS_TOPICS = {
    "$SYS/broker/store/messages/count": ("broker_stored_messages", "messages the broker holds (retained + queued)"),
    "$SYS/broker/store/messages/bytes": ("broker_stored_bytes", "payload bytes the broker holds"),
    "$SYS/broker/clients/connected": ("broker_clients_connected", "clients connected now"),
    "$SYS/broker/clients/disconnected": ("broker_clients_disconnected",
                                         "persistent sessions whose client is away (retired parts count here)"),
    "$SYS/broker/retained messages/count": ("broker_retained_messages", "retained messages"),
    "$SYS/broker/heap/current": ("broker_heap_bytes", "the broker's heap"),
}


class BrokerSys:
    """A second, clean-session connection of the bridge's identity that reads the broker's ``$SYS`` figures:
    the queue depth the bridge drains (``apt_broker_stored_messages``) is what an alert must watch before the
    broker's ``max_queued_messages`` is reached. Kept apart from the forwarding session, whose subscriptions
    and acknowledgements must see device traffic only."""

    def __init__(self, options: MqttOptions, *, client_id: str) -> None:
        self.values: dict[str, float] = {}
        self.updated = 0.0
        self.options = options
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.username_pw_set(options.username or client_id, options.password or None)
        if options.tls is not None:
            c.tls_set_context(options.tls)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.reconnect_delay_set(1, 30)
        self.client = c
        self._lock = threading.Lock()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object,
                    properties: object) -> None:
        client.subscribe([(t, 0) for t in SYS_TOPICS])

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            value = float(message.payload.split()[0])
        except (ValueError, IndexError):
            return
        with self._lock:
            self.values[message.topic] = value
            self.updated = time.time()

    def start(self) -> None:
        self.client.connect_async(self.options.host, self.options.port, keepalive=max(self.options.keepalive_s, 5))
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def samples(self) -> list[Sample]:
        with self._lock:
            values, updated = dict(self.values), self.updated
        out = [Sample(SYS_TOPICS[t][0], "gauge", SYS_TOPICS[t][1], v) for t, v in values.items()]
        if updated:
            out.append(Sample("broker_sys_updated_seconds", "gauge", "Unix time of the last $SYS figure", updated))
        return out
