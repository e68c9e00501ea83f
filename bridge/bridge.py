"""MQTT → Kafka with no loss: a message is acknowledged to the broker only after Kafka has it.

One thread, one loop: read MQTT (only while the in-flight bound allows), produce to Kafka, poll
delivery reports, acknowledge in receipt order, retry failed deliveries, report counters.

Input cannot stop it: every message ends as a Kafka record or a dead letter (:func:`route` is total, a
record Kafka refuses is dead-lettered instead). What stops it is a service: Kafka refusing anything at
all, or an error nobody expected outside the input.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.kafka_sink import Header, KafkaSink, rejects_record
from apt_energy.bridge.mqtt_source import MqttOptions, MqttSource, raw_topic
from apt_energy.bridge.partition import Part, Partition
from apt_energy.bridge.routing import (
    DEAD,
    MAX_TOPIC_BYTES,
    MESSAGE_SIZE_LIMIT,
    READING,
    SKIP,
    Kind,
    dead_letter_value,
    route,
    topic_bytes,
)
from apt_energy.bridge.stats import BridgeStats
from apt_energy.config import Settings
from apt_energy.core.errors import ConfigError, InvalidInput, ServiceError
from apt_energy.core.kafka import KafkaClient
from apt_energy.core.mqtt import MqttLogin, tls_context
from confluent_kafka import KafkaError, Message

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaTopics:
    """Where forwarded readings, device status/meta and dead letters go."""

    readings: str
    devices: str
    dead_letters: str


@dataclass(frozen=True)
class BridgeOptions:
    """The bridge's own knobs (``bridge.*`` in config/pipeline.yaml)."""

    max_payload_bytes: int = 4096      # larger payloads are dead-lettered, truncated to this many bytes
    max_in_flight: int = 20000         # unacknowledged MQTT messages; beyond this the bridge stops reading
    stats_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= self.max_payload_bytes <= MESSAGE_SIZE_LIMIT:
            raise ConfigError(f"bridge.max_payload_bytes: expected 1..{MESSAGE_SIZE_LIMIT} (Mosquitto's "
                              f"message_size_limit), got {self.max_payload_bytes}")
        if self.max_in_flight < 1:
            raise ConfigError(f"bridge.max_in_flight: expected an integer ≥ 1, got {self.max_in_flight}")


def mqtt_options(settings: Settings) -> MqttOptions:
    """The bridge's broker connection, from the settings (its identity, TLS and session knobs)."""
    b, mq = settings.bridge, settings.mqtt
    login = MqttLogin.from_settings(settings, "bridge")
    return MqttOptions(host=mq.host, port=mq.port, keepalive_s=mq.keepalive_s, username=login.username,
                       password=login.password.reveal(),
                       tls=tls_context(login.ca_file) if login.ca_file is not None else None,
                       session_expiry_s=b.session_expiry_s, receive_maximum=b.max_in_flight)


def part_client_id(base: str, part: Part) -> str:
    """A fixed client id per part, so the broker keeps each part's session: ``base`` alone for ``0/1``,
    ``base-<i>of<n>`` otherwise (a new layout gets new sessions, so old and new can overlap while it changes)."""
    return base if part.count == 1 else f"{base}-{part.index}of{part.count}"


class _Outgoing(NamedTuple):
    """One record on its way to Kafka (a NamedTuple: one is made per message, and a frozen dataclass's
    ``__init__`` costs a ``object.__setattr__`` per field)."""

    token: int                         # -1: QoS 0, nothing to acknowledge
    kind: Kind
    key: bytes
    value: bytes
    headers: list[Header]              # mqtt.* and bridge.*
    errors: tuple[Header, ...] = ()    # error.* of a dead letter


def _reason(text: str) -> Header:
    return ("error.reason", text.encode("utf-8", "backslashreplace"))


class Bridge:
    """Forward what the MQTT subscriptions of ``partition`` receive to the Kafka ``topics``."""

    def __init__(self, *, partition: Partition, mqtt_options: MqttOptions, kafka: KafkaClient, topics: KafkaTopics,
                 client_id: str, options: BridgeOptions | None = None, stats_path: Path | None = None,
                 kafka_extra: dict[str, Any] | None = None) -> None:
        self.partition = partition
        self.options = options or BridgeOptions()
        self.client_id = client_id
        self.stats = BridgeStats()
        self.stats_path = stats_path
        self.acks = AckQueue()
        self.ready_acks: list[int] = []    # mids acknowledged in this pass, in receipt order
        self.epoch = 0
        self.failed: list[_Outgoing] = []
        self.fatal: ServiceError | None = None
        self.stop_event = threading.Event()
        self.sink = KafkaSink(client=kafka, client_id=client_id, extra=kafka_extra)
        self.source = MqttSource(mqtt_options, client_id=client_id, subscriptions=partition.subscriptions(),
                                 unsubscribe=partition.stale(), on_message=self._on_message,
                                 on_connected=self._on_connected)
        self.topic_for: dict[Kind, str] = {READING: topics.readings, "device": topics.devices,
                                           DEAD: topics.dead_letters}
        self._describe = f"broker={mqtt_options.host}:{mqtt_options.port} kafka={kafka.bootstrap}"

    @classmethod
    def from_settings(cls, settings: Settings, *, part: Part | None = None, client_id: str | None = None,
                      stats_path: Path | None = None, kafka_extra: dict[str, Any] | None = None) -> Bridge:
        """Compose a bridge from the settings tree: part ``part`` (default ``0/1``) connects as
        :func:`part_client_id` of ``client_id`` (default ``bridge.client_id``)."""
        part = part or Part()
        b, mq, k = settings.bridge, settings.mqtt, settings.kafka
        buildings = tuple(n for group in settings.complex.buildings for n in group.numbers)
        partition = Partition(mq.topic_prefix, settings.complex.id, buildings, part,
                              shared_group=b.group if b.shared_subscription else None,
                              former_groups=() if b.shared_subscription else (b.group,))
        return cls(partition=partition, mqtt_options=mqtt_options(settings),
                   kafka=KafkaClient.from_settings(settings, "bridge"),
                   topics=KafkaTopics(k.readings_topic, k.devices_topic, k.dead_letter_topic),
                   client_id=part_client_id(client_id or b.client_id, part),
                   options=BridgeOptions(max_payload_bytes=b.max_payload_bytes, max_in_flight=b.max_in_flight,
                                         stats_interval_s=b.stats_interval_s),
                   stats_path=stats_path, kafka_extra=kafka_extra)

    # -------------------------------------------------------------------------- MQTT side

    def _on_connected(self) -> None:
        self.epoch += 1
        self.acks.forget()
        self.ready_acks.clear()   # mids of the lost connection: the broker redelivers those messages
        if self.epoch > 1:
            self.stats.reconnects += 1

    def _ack_now(self, msg: mqtt.MQTTMessage) -> None:
        """Acknowledge a message that goes nowhere, in its place in the receipt order."""
        if msg.qos > 0:
            token = self.epoch << 32 | msg.mid
            self.acks.received(token)
            self._ack_ready(self.acks.delivered(token))

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        self.stats.received += 1
        if msg.dup:
            self.stats.duplicates_flagged += 1
        topic = raw_topic(msg)
        if not self.partition.keeps(topic if isinstance(topic, str) else ""):
            self.stats.passed_over += 1    # another part's building, seen through part 0's catch-all
            self._ack_now(msg)
            return
        payload = bytes(msg.payload)
        limit = self.options.max_payload_bytes
        r = route(self.partition.prefix, topic, payload, max_bytes=limit)
        if r.kind == SKIP:
            self.stats.skipped += 1
            self._ack_now(msg)
            return
        headers: list[Header] = [
            ("mqtt.topic", topic_bytes(topic)[:MAX_TOPIC_BYTES]),
            ("mqtt.qos", str(msg.qos).encode()),
            ("mqtt.retain", b"1" if msg.retain else b"0"),
            ("mqtt.dup", b"1" if msg.dup else b"0"),
            ("bridge.received_ms", str(int(time.time() * 1000)).encode()),
            ("bridge.id", self.client_id.encode()),
        ]
        # QoS 0 needs no ack; QoS 1 tokens order the acknowledgements.
        token = (self.epoch << 32) | msg.mid if msg.qos > 0 else -1
        if token >= 0:
            self.acks.received(token)
        if r.kind == DEAD:
            logger.debug("dead letter key=%r reason=%s", r.key, r.reason)
            value, cut = dead_letter_value(payload, keep=limit)
            self._produce(_Outgoing(token, DEAD, r.key, value, headers, (*cut, _reason(r.reason))))
        else:
            self._produce(_Outgoing(token, r.kind, r.key, payload, headers))

    def _dead(self, out: _Outgoing, reason: str) -> _Outgoing:
        """A record Kafka refused, as a dead letter: a forwarded one cut to ``max_payload_bytes``, a dead
        letter sent with no value at all (its headers still say the size and sha256 of the payload)."""
        if out.kind == DEAD:
            kept = [h for h in out.errors if h[0] != "error.reason"]
            value, cut = b"", kept or dead_letter_value(out.value, keep=0)[1]
        else:
            value, cut = dead_letter_value(out.value, keep=self.options.max_payload_bytes)
        return _Outgoing(out.token, DEAD, out.key, value, out.headers, (*cut, _reason(reason)))

    def _produce(self, out: _Outgoing) -> None:
        try:
            headers = [*out.headers, *out.errors] if out.errors else out.headers   # the sink copies them
            self.sink.produce(self.topic_for[out.kind], key=out.key, value=out.value, headers=headers,
                              on_delivery=partial(self._delivered, out))
        except InvalidInput as exc:   # Kafka refuses this record itself: it is input, not an outage
            if out.kind == DEAD and not out.value:
                raise ServiceError(f"kafka refuses even an empty dead letter: {exc}", service="kafka") from exc
            self._produce(self._dead(out, str(exc)))

    # ------------------------------------------------------------------------- Kafka side

    def _delivered(self, out: _Outgoing, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            if rejects_record(err):
                if out.kind == DEAD and not out.value:
                    self.fatal = ServiceError(f"kafka refuses even an empty dead letter: {err.str()}",
                                              service="kafka")
                    return
                logger.warning("kafka refused a record topic=%s error=%s; dead-lettering it", self.topic_for[out.kind],
                               err.str())
                self.failed.append(self._dead(out, f"kafka_rejected: {err.str()}"))
                return
            self.stats.kafka_errors += 1
            logger.warning("kafka delivery failed topic=%s error=%s; producing again", self.topic_for[out.kind], err)
            self.failed.append(out)
            return
        if out.kind == DEAD:
            self.stats.dead_lettered += 1
        else:
            self.stats.forwarded += 1
        if out.token >= 0:
            self._ack_ready(self.acks.delivered(out.token))

    def _ack_ready(self, tokens: list[int]) -> None:
        """Collect the PUBACKs now due; :meth:`_flush_acks` queues them to the broker as one write."""
        for token in tokens:
            if token >> 32 == self.epoch:
                self.ready_acks.append(token & 0xFFFFFFFF)
                self.stats.acked += 1

    def _flush_acks(self) -> None:
        if self.ready_acks:
            mids, self.ready_acks = self.ready_acks, []
            self.source.ack_many(mids)

    def _retry_failed(self) -> None:
        retry, self.failed = self.failed, []
        for out in retry:
            self.stats.reproduced += 1
            self._produce(out)

    # ------------------------------------------------------------------------------ loop

    def run(self) -> BridgeStats:
        """Forward until :meth:`stop`; raises :class:`ServiceError` if Kafka refuses everything."""
        limit = self.options.max_in_flight
        interval = self.options.stats_interval_s
        last_report = time.monotonic()
        logger.info("bridge started client_id=%s part=%s subscriptions=%s %s", self.client_id, self.partition.part,
                    ",".join(self.source.subscriptions), self._describe)
        try:
            while not self.stop_event.is_set():
                self.source.poll(0.005 if len(self.sink) else 0.05, read=len(self.acks) < limit)
                self.sink.poll(0)
                self._flush_acks()
                if self.fatal is not None:
                    raise self.fatal
                if self.failed:
                    self._retry_failed()
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
        while (len(self.sink) or self.failed) and self.fatal is None and time.monotonic() < deadline:
            self.sink.poll(0.05)
            if self.failed:
                self._retry_failed()
            self._flush_acks()
            self.source.poll(0, read=False)
        self._flush_acks()
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
