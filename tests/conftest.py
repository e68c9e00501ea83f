"""Session-wide fixtures: the native stack (started once, if not already running) and factories for
isolated resources (uuid-named databases, Kafka topics, MQTT topic prefixes)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

import config
from config import Settings
from database import connect, migrate, seed
from stack import NativeStack
from stack.secrets import ensure_dotenv


@pytest.fixture(scope="session")
def native_stack() -> Iterator[NativeStack]:
    """The real Mosquitto, PostgreSQL and Kafka. Started here unless already healthy; stopped at the end
    only if started here."""
    ensure_dotenv()
    stack = NativeStack(config.load())
    already = all(s.healthy for s in stack.status())
    if already:
        stack.migrate()
    else:
        stack.up()
    yield stack
    if not already:
        stack.down()


@pytest.fixture(scope="session")
def stack_settings(native_stack: NativeStack) -> Settings:
    return native_stack.settings


@pytest.fixture
def database_factory(native_stack: NativeStack) -> Iterator[Callable[[], Settings]]:
    """Make a fresh, migrated and seeded database named ``t_<uuid>``; returns settings pointing at it."""
    created: list[str] = []

    def make() -> Settings:
        name = f"t_{uuid.uuid4().hex[:12]}"
        s = native_stack.settings
        with native_stack.postgres.admin_connect() as admin:
            admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(s.postgres.writer_user)))
            admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(s.postgres.reader_user)))
        created.append(name)
        settings = dataclasses.replace(s, postgres=dataclasses.replace(s.postgres, database=name))
        with connect(settings) as conn:
            migrate(conn, reader_role=s.postgres.reader_user)
            seed(conn, settings)
        return settings

    yield make
    with native_stack.postgres.admin_connect() as admin:
        for name in created:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_db(database_factory: Callable[[], Settings]) -> Settings:
    return database_factory()


@pytest.fixture
def topic_factory(native_stack: NativeStack) -> Iterator[Callable[..., str]]:
    """Create a uuid-named Kafka topic (deleted afterwards)."""
    from confluent_kafka.admin import AdminClient

    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 3, compact: bool = False) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        native_stack.kafka.create_topics({name: {"cleanup.policy": "compact"} if compact else {}},
                                         partitions=partitions)
        created.append(name)
        return name

    yield make
    if created:
        admin = AdminClient({"bootstrap.servers": native_stack.settings.kafka.bootstrap})
        for future in admin.delete_topics(created).values():
            try:
                future.result(timeout=10)
            except Exception:
                pass


@pytest.fixture
def pipeline_settings(stack_settings: Settings, topic_factory: Callable[..., str]) -> Settings:
    """Settings isolated for one test: uuid MQTT prefix, Kafka topics, bridge group and client id."""
    tag = uuid.uuid4().hex[:10]
    s = stack_settings
    return dataclasses.replace(
        s,
        mqtt=dataclasses.replace(s.mqtt, topic_prefix=f"t{tag}"),
        kafka=dataclasses.replace(s.kafka, readings_topic=topic_factory("readings"),
                                  devices_topic=topic_factory("devices", compact=True),
                                  dead_letter_topic=topic_factory("dlq")),
        bridge=dataclasses.replace(s.bridge, group=f"g{tag}", client_id=f"bridge-{tag}"),
    )


def env_for(settings: Settings) -> dict[str, str]:
    """Environment that makes a subprocess use the same isolated settings."""
    import os

    return {**os.environ,
            "APT_ENERGY_MQTT_TOPIC_PREFIX": settings.mqtt.topic_prefix,
            "APT_ENERGY_MQTT_PORT": str(settings.mqtt.port),
            "APT_ENERGY_KAFKA_READINGS_TOPIC": settings.kafka.readings_topic,
            "APT_ENERGY_KAFKA_DEVICES_TOPIC": settings.kafka.devices_topic,
            "APT_ENERGY_KAFKA_DEAD_LETTER_TOPIC": settings.kafka.dead_letter_topic,
            "APT_ENERGY_BRIDGE_GROUP": settings.bridge.group,
            "APT_ENERGY_BRIDGE_CLIENT_ID": settings.bridge.client_id,
            "APT_ENERGY_POSTGRES_DATABASE": settings.postgres.database}


def pg_query(settings: Settings, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with connect(settings) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


__all__ = ["env_for", "pg_query", "psycopg"]
