"""MQTT → Kafka with no loss: a message is acknowledged to the broker only after Kafka has it.

One thread, one loop: read MQTT (only while the in-flight bound allows), produce to Kafka, poll
delivery reports, acknowledge in receipt order, retry failed deliveries, report counters.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.kafka_sink import KafkaSink
from apt_energy.bridge.mqtt_source import MqttSource
from apt_energy.bridge.routing import DEAD, READING, SKIP, route
from apt_energy.bridge.stats import BridgeStats
from apt_energy.config import Settings
from confluent_kafka import KafkaError, Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Outgoing:
    token: int
    kind: str
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, str | bytes | None]]


class Bridge:
    def __init__(self, settings: Settings, *, client_id: str | None = None, stats_path: Path | None = None,
                 kafka_extra: dict[str, object] | None = None) -> None:
        self.settings = settings
        self.client_id = client_id or settings.bridge.client_id
        self.stats = BridgeStats()
        self.stats_path = stats_path
        self.acks = AckQueue()
        self.epoch = 0
        self.failed: list[_Outgoing] = []
        self.stop_event = threading.Event()
        self.sink = KafkaSink(settings, client_id=self.client_id, extra=kafka_extra)
        self.source = MqttSource(settings, client_id=self.client_id, on_message=self._on_message,
                                 on_connected=self._on_connected)
        k = settings.kafka
        self.topic_for = {READING: k.readings_topic, "device": k.devices_topic, DEAD: k.dead_letter_topic}

    # -------------------------------------------------------------------------- MQTT side

    def _on_connected(self) -> None:
        self.epoch += 1
        self.acks.forget()
        if self.epoch > 1:
            self.stats.reconnects += 1

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        if msg.dup:
            self.stats.duplicates_flagged += 1
        payload = bytes(msg.payload)
        r = route(self.settings.mqtt.topic_prefix, msg.topic, payload, max_bytes=self.settings.bridge.max_payload_bytes)
        headers: list[tuple[str, str | bytes | None]] = [
            ("mqtt.topic", msg.topic.encode(errors="replace")),
            ("mqtt.qos", str(msg.qos).encode()),
            ("mqtt.retain", b"1" if msg.retain else b"0"),
            ("mqtt.dup", b"1" if msg.dup else b"0"),
            ("bridge.received_ms", str(int(time.time() * 1000)).encode()),
            ("bridge.id", self.client_id.encode()),
        ]
        if r.kind == SKIP:
            self.stats.skipped += 1
            if msg.qos > 0:
                self.acks.received(self.epoch << 32 | msg.mid)
                self._ack_ready(self.acks.delivered(self.epoch << 32 | msg.mid))
            return
        if r.kind == DEAD:
            headers.append(("error.reason", r.reason.encode()))
            logger.debug("dead letter topic=%s reason=%s", msg.topic, r.reason)
        # QoS 0 needs no ack; the token still orders it among the others.
        token = (self.epoch << 32) | (msg.mid if msg.qos > 0 else 0)
        if msg.qos > 0:
            self.acks.received(token)
        self._produce(_Outgoing(token if msg.qos > 0 else -1, r.kind, self.topic_for[r.kind], r.key, payload, headers))

    def _produce(self, out: _Outgoing) -> None:
        self.sink.produce(out.topic, key=out.key, value=out.value, headers=out.headers,
                          on_delivery=partial(self._delivered, out))

    # ------------------------------------------------------------------------- Kafka side

    def _delivered(self, out: _Outgoing, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.stats.kafka_errors += 1
            logger.warning("kafka delivery failed topic=%s error=%s; producing again", out.topic, err)
            self.failed.append(out)
            return
        if out.kind == DEAD:
            self.stats.dead_lettered += 1
        else:
            self.stats.forwarded += 1
        if out.token >= 0:
            self._ack_ready(self.acks.delivered(out.token))

    def _ack_ready(self, tokens: list[int]) -> None:
        for token in tokens:
            if token >> 32 == self.epoch:
                self.source.ack(token & 0xFFFFFFFF)
                self.stats.acked += 1

    # ------------------------------------------------------------------------------ loop

    def run(self) -> BridgeStats:
        limit = self.settings.bridge.max_in_flight
        interval = self.settings.bridge.stats_interval_s
        last_report = time.monotonic()
        logger.info("bridge started client_id=%s group=%s broker=%s:%d kafka=%s", self.client_id,
                    self.settings.bridge.group, self.settings.mqtt.host, self.settings.mqtt.port,
                    self.settings.kafka.bootstrap)
        try:
            while not self.stop_event.is_set():
                self.source.poll(0.005 if len(self.sink) else 0.05, read=len(self.acks) < limit)
                self.sink.poll(0)
                if self.failed:
                    retry, self.failed = self.failed, []
                    for out in retry:
                        self.stats.reproduced += 1
                        self._produce(out)
                now = time.monotonic()
                if now - last_report >= min(interval, 1.0) or self.source.subscribed != self.stats.subscribed:
                    self._report(now - last_report >= interval)
                    last_report = now if now - last_report >= interval else last_report
        finally:
            self._shutdown()
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()

    def _shutdown(self) -> None:
        """Stop reading, let Kafka confirm what it has, acknowledge that, then leave the session."""
        deadline = time.monotonic() + 30
        while (len(self.sink) or self.failed) and time.monotonic() < deadline:
            self.sink.poll(0.05)
            if self.failed:
                retry, self.failed = self.failed, []
                for out in retry:
                    self._produce(out)
            self.source.poll(0, read=False)
        self.source.poll(0, read=False)
        self.source.close()
        self._report(True)
        logger.info("bridge stopped %s", self.stats.line())

    def _report(self, log: bool) -> None:
        self.stats.in_flight = len(self.acks)
        self.stats.subscribed = self.source.subscribed
        if self.stats_path:
            self.stats.write(self.stats_path)
        if log:
            logger.info("%s", self.stats.line())
