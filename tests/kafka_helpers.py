"""Reading Kafka topics back in tests."""

from __future__ import annotations

import time
import uuid

from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from confluent_kafka import Consumer, Message


def consume(settings: Settings, topic: str, *, until: int, timeout: float = 60.0,
            idle: float = 0.0) -> list[Message]:
    """Read ``topic`` (as the admin principal) from the beginning until ``until`` messages arrived (then
    ``idle`` more seconds of nothing new, to catch extras) or ``timeout``."""
    consumer = Consumer(KafkaClient.from_settings(settings, "admin").config(**{
        "group.id": f"test-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = consumer.consume(5000, 0.5)
            fresh = [m for m in batch if m.error() is None]
            out.extend(fresh)
            if len(out) >= until:
                if idle <= 0:
                    break
                if fresh:
                    quiet_since = time.monotonic()
                elif quiet_since is None:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= idle:
                    break
    finally:
        consumer.close()
    return out


def headers(message: Message) -> dict[str, bytes]:
    return {k: v for k, v in (message.headers() or [])}
