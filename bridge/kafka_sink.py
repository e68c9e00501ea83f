"""The Kafka side of the bridge: an idempotent producer with ``acks=all``, batching and compression."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from apt_energy.config import Settings
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from apt_energy.errors import ServiceError
from apt_energy.kafka import kafka_client

logger = logging.getLogger(__name__)

OnDelivery = Callable[[KafkaError | None, Message], None]


class KafkaSink:
    def __init__(self, settings: Settings, *, client_id: str, extra: dict[str, Any] | None = None) -> None:
        config: dict[str, Any] = kafka_client(settings, "bridge").config(**{
            "client.id": client_id,
            "enable.idempotence": True,   # implies acks=all and no reordering on retry
            "acks": "all",
            "linger.ms": 10,
            "batch.num.messages": 10000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500000,
            # A Kafka outage is retried inside librdkafka for this long before a message fails back to
            # us (and is produced again); MQTT stays unacknowledged all the while.
            "message.timeout.ms": 120000,
            "reconnect.backoff.max.ms": 2000,
        })
        config.update(extra or {})
        self.producer = Producer(config)

    def produce(self, topic: str, *, key: bytes, value: bytes, headers: list[tuple[str, str | bytes | None]],
                on_delivery: OnDelivery) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=list(headers), on_delivery=on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain it
            except KafkaException as exc:
                raise ServiceError(f"kafka produce failed topic={topic}: {exc}") from exc

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries; returns how many are still outstanding."""
        return int(self.producer.flush(timeout))

    def __len__(self) -> int:
        return len(self.producer)


