"""The Kafka side of the bridge: an idempotent producer with ``acks=all``, batching and compression."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from apt_energy.core.errors import InvalidInput, ServiceError
from apt_energy.core.kafka import KafkaClient
from confluent_kafka import KafkaError, KafkaException, Message, Producer

logger = logging.getLogger(__name__)

OnDelivery = Callable[[KafkaError | None, Message], None]
Header = tuple[str, str | bytes | None]

# Errors about one record, not about Kafka: producing the same record again can never succeed, so the
# bridge dead-letters it instead (an error of any other code is Kafka's, and is retried or stops the bridge).
REJECTED: Final = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_MSG_SIZE, KafkaError.INVALID_RECORD,
                             KafkaError.INVALID_MSG, KafkaError._INVALID_ARG})


def rejects_record(err: KafkaError) -> bool:
    """Whether ``err`` (from a produce call or a delivery report) is about the record itself."""
    return err.code() in REJECTED


class KafkaSink:
    """Produce records as ``client`` (the bridge's principal); delivery reports arrive through
    :meth:`poll` on the caller's thread."""

    def __init__(self, *, client: KafkaClient, client_id: str, extra: Mapping[str, Any] | None = None) -> None:
        config: dict[str, Any] = client.config(**{
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

    def produce(self, topic: str, *, key: bytes, value: bytes, headers: list[Header], on_delivery: OnDelivery) -> None:
        """Queue one record. Raises :class:`InvalidInput` when Kafka refuses the record itself (too large,
        malformed) and :class:`ServiceError` for anything else."""
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=list(headers), on_delivery=on_delivery)
                return
            except BufferError:
                self.producer.poll(0.05)  # the local queue is full: let deliveries drain it
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if err is not None and rejects_record(err):
                    raise InvalidInput(f"kafka_rejected: {err.str()}") from exc
                raise ServiceError(f"kafka produce failed topic={topic}: {exc}", service="kafka") from exc

    def poll(self, timeout: float = 0.0) -> int:
        """Serve delivery reports (their callbacks run here); returns how many."""
        return int(self.producer.poll(timeout))

    def __len__(self) -> int:
        return len(self.producer)
