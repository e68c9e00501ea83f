"""Attempts on Kafka without, or with the wrong, principal: each refused by SASL/SCRAM or an ACL."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from apt_energy.config import Secret, Settings
from apt_energy.core.kafka import KafkaClient
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration


def _produce(config: dict[str, object], topic: str, *, idempotent: bool = True) -> KafkaError | None:
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer({**config, "message.timeout.ms": 8000, "enable.idempotence": idempotent})
    producer.produce(topic, b"forged", on_delivery=delivered)
    producer.flush(12)
    return errors[0] if errors else None


def _first_error(config: dict[str, object], topic: str) -> KafkaError | None:
    """Consume once; the first error the client reports (authentication or authorization)."""
    consumer = Consumer({**config, "group.id": f"apt-spark-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        for _ in range(20):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is not None:
                return msg.error()
    finally:
        consumer.close()
    return None


def test_a_client_without_credentials_is_refused(stack_settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": stack_settings.kafka.bootstrap, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=4)


@pytest.mark.parametrize("user", ["apt-admin", "apt-bridge", "nobody"])
def test_a_wrong_password_is_refused(stack_settings: Settings, user: str) -> None:
    client = dataclasses.replace(KafkaClient.from_settings(stack_settings, "admin"), username=user,
                                 password=Secret("change-me"))
    errors: list[KafkaError] = []
    admin = AdminClient(client.config(error_cb=errors.append, log_level=0))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=5)
    admin.poll(1)  # serve the error callbacks
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_the_bridge_writes_readings_but_cannot_read_or_delete_them(stack_settings: Settings) -> None:
    bridge = KafkaClient.from_settings(stack_settings, "bridge").config()
    topic = stack_settings.kafka.readings_topic
    assert _produce(bridge, topic) is None
    err = _first_error(bridge, topic)
    assert err is not None and err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                              KafkaError.GROUP_AUTHORIZATION_FAILED)
    admin = AdminClient(bridge)
    futures = admin.delete_topics([topic])
    with pytest.raises(KafkaException, match=r"(?i)authoriz"):
        futures[topic].result(timeout=10)


def test_the_bridge_cannot_write_other_topics_or_create_them(stack_settings: Settings) -> None:
    bridge = KafkaClient.from_settings(stack_settings, "bridge").config()
    err = _produce(bridge, "__consumer_offsets")
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    from confluent_kafka.admin import NewTopic

    admin = AdminClient(bridge)
    futures = admin.create_topics([NewTopic(f"evil.{uuid.uuid4().hex}", 1, 1)])
    with pytest.raises(KafkaException, match=r"(?i)authoriz"):
        next(iter(futures.values())).result(timeout=10)


def test_the_stream_job_reads_but_cannot_forge_readings(stack_settings: Settings) -> None:
    spark = KafkaClient.from_settings(stack_settings, "spark").config()
    err = _produce(spark, stack_settings.kafka.readings_topic, idempotent=False)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _first_error(spark, stack_settings.kafka.readings_topic) is None  # reading is allowed


def test_the_stream_job_may_use_only_its_own_consumer_groups(stack_settings: Settings) -> None:
    spark = KafkaClient.from_settings(stack_settings, "spark").config()
    consumer = Consumer({**spark, "group.id": "someone-elses-group", "auto.offset.reset": "earliest"})
    consumer.subscribe([stack_settings.kafka.readings_topic])
    try:
        errors = [m.error() for m in (consumer.poll(0.5) for _ in range(20)) if m is not None and m.error()]
    finally:
        consumer.close()
    assert any(e.code() == KafkaError.GROUP_AUTHORIZATION_FAILED for e in errors)


def test_spark_options_carry_the_principal_and_mask_nothing_in_repr() -> None:
    client = KafkaClient(bootstrap="127.0.0.1:1", username="apt-spark", password=Secret("pw-123"))
    assert "pw-123" not in repr(client)
    options = client.spark_options()
    assert options["kafka.security.protocol"] == "SASL_PLAINTEXT"
    assert 'username="apt-spark" password="pw-123";' in options["kafka.sasl.jaas.config"]
