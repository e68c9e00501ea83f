"""Session-wide fixtures: the native stack (started once, if not already running) and factories for
isolated resources (uuid-named databases, Kafka topics, MQTT topic prefixes)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect, migrate, roles, seed
from apt_energy.database.roles import harden_database
from apt_energy.stack import NativeStack
from apt_energy.stack.kafka import KafkaAdmin, ensure_acls
from apt_energy.stack.native import StackOptions
from apt_energy.stack.secrets import ensure_dotenv
from psycopg import sql
from pyspark.sql import SparkSession

from apt_energy import config
from tests.slack_stub import SlackStub

TEST_PREFIX_ROOT = "test"


# What the session made on the stack, removed at its end whatever a test did (tests/conftest.py's
# factories record into these; a test that cleans up itself removes its entries).
_SESSION_DATABASES: set[str] = set()
_SESSION_TOPICS: set[str] = set()


class SessionStack(NativeStack):
    """The session's native stack with the settings it was built from: tests compose their components
    from them (the stack itself keeps only its options)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(StackOptions.from_settings(settings))
        self.settings = settings


@pytest.fixture(scope="session")
def native_stack() -> Iterator[SessionStack]:
    """The real Mosquitto, PostgreSQL and Kafka. Started here unless already healthy; stopped at the end
    only if started here. A stack that was running is left as it was found: the broker's test grants
    withdrawn, and the databases, topics, ACLs and retained test messages of the session removed (also
    after failed tests; after a killed session, `apt-energy stack up` withdraws stale grants and ACLs)."""
    ensure_dotenv()
    # Each test isolates its MQTT traffic under test/<uuid>/…: the broker grants every role the same
    # rights there as under the real prefix (stack/dynsec.py), only while the session runs.
    # Subprocesses inherit the variable.
    os.environ["APT_ENERGY_MQTT_TEST_PREFIX_ROOT"] = TEST_PREFIX_ROOT
    stack = SessionStack(config.load())
    already = all(s.healthy for s in stack.status())
    if already:
        stack.mosquitto.up()  # restarts the broker with the test grants unless it has them
        stack.migrate()
    else:
        stack.up()
    try:
        yield stack
    finally:
        leave_as_found(stack, stop=not already)


def leave_as_found(stack: SessionStack, *, stop: bool) -> None:
    """The session's end: its databases, topics (and their ACLs), retained test messages gone; the broker
    without the test grants (or the whole stack stopped, if the session started it)."""
    from apt_energy.stack.kafka import prune_acls

    drop_databases(stack, sorted(_SESSION_DATABASES))
    delete_topics(stack, sorted(_SESSION_TOPICS))
    prune_acls(KafkaAdmin.from_settings(stack.settings))
    if stop:
        stack.down()
    else:
        stack.withdraw_test_grants()
    os.environ.pop("APT_ENERGY_MQTT_TEST_PREFIX_ROOT", None)


@pytest.fixture(scope="session")
def stack_settings(native_stack: SessionStack) -> Settings:
    return native_stack.settings


def create_database(stack: SessionStack) -> Settings:
    """A fresh, migrated and seeded database named ``t_<uuid>``; returns settings pointing at it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    s = stack.settings
    _SESSION_DATABASES.add(name)
    with stack.postgres.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(s.postgres.owner_user)))
    with stack.postgres.admin_connect(dbname=name) as admin:
        harden_database(admin, name, roles(s))
    settings = dataclasses.replace(s, postgres=dataclasses.replace(s.postgres, database=name))
    with connect(settings, role="owner") as conn:
        migrate(conn, roles=roles(s))
        seed(conn, settings)
    return settings


def drop_databases(stack: NativeStack, names: list[str]) -> None:
    with stack.postgres.admin_connect() as admin:
        for name in names:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            _SESSION_DATABASES.discard(name)


@pytest.fixture
def database_factory(native_stack: NativeStack) -> Iterator[Callable[[], Settings]]:
    """Make fresh, migrated and seeded databases (dropped afterwards)."""
    created: list[str] = []

    def make() -> Settings:
        settings = create_database(native_stack)
        created.append(settings.postgres.database)
        return settings

    yield make
    drop_databases(native_stack, created)


@pytest.fixture
def fresh_db(database_factory: Callable[[], Settings]) -> Settings:
    return database_factory()


def delete_topics(stack: SessionStack, names: list[str]) -> None:
    """Delete the topics and every ACL on them (Kafka keeps a topic's ACLs after the topic is gone)."""
    from apt_energy.stack.kafka import delete_topic_acls
    from confluent_kafka.admin import AdminClient

    if names:
        admin = AdminClient(KafkaClient.from_settings(stack.settings, "admin").config())
        for future in admin.delete_topics(names).values():
            try:
                future.result(timeout=10)
            except Exception:
                pass  # already gone (or never made): its ACLs go below all the same
        delete_topic_acls(KafkaAdmin.from_settings(stack.settings), names)
        _SESSION_TOPICS.difference_update(names)


def topic_maker(stack: NativeStack, created: list[str]) -> Callable[..., str]:
    """A function creating uuid-named Kafka topics, recording their names in ``created``."""

    def make(prefix: str = "t", partitions: int = 3, compact: bool = False) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:10]}"
        _SESSION_TOPICS.add(name)
        stack.kafka.create_topics({name: {"cleanup.policy": "compact"} if compact else {}}, partitions=partitions)
        created.append(name)
        return name

    return make


@pytest.fixture
def topic_factory(native_stack: NativeStack) -> Iterator[Callable[..., str]]:
    """Create a uuid-named Kafka topic (deleted afterwards)."""
    created: list[str] = []
    yield topic_maker(native_stack, created)
    delete_topics(native_stack, created)


def isolate(settings: Settings, make_topic: Callable[..., str]) -> Settings:
    """Settings of their own: uuid MQTT prefix, Kafka topics, bridge group and client id."""
    tag = uuid.uuid4().hex[:10]
    s = settings
    isolated = dataclasses.replace(
        s,
        mqtt=dataclasses.replace(s.mqtt, topic_prefix=f"{TEST_PREFIX_ROOT}/t{tag}"),
        kafka=dataclasses.replace(s.kafka, readings_topic=make_topic("readings"),
                                  devices_topic=make_topic("devices", compact=True),
                                  dead_letter_topic=make_topic("dlq")),
        bridge=dataclasses.replace(s.bridge, group=f"g{tag}", client_id=f"bridge-{tag}"),
    )
    ensure_acls(KafkaAdmin.from_settings(isolated))  # the bridge may write these topics, the stream job read them
    return isolated


@pytest.fixture
def pipeline_settings(stack_settings: Settings, topic_factory: Callable[..., str]) -> Settings:
    """Settings isolated for one test: uuid MQTT prefix, Kafka topics, bridge group and client id."""
    return isolate(stack_settings, topic_factory)


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """One small `apt-energy demo` through the whole real chain, shared by the tests that read its result."""

    settings: Settings
    result: subprocess.CompletedProcess[str]
    slack: SlackStub
    output: Path


@pytest.fixture(scope="session")
def demo_run(native_stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """20 households × 2 months at 6 h (Jan–Feb 2024) in a database and topics of its own; January
    electricity is ~250 kWh, so a lower warning level makes sure threshold alerts are raised."""
    topics: list[str] = []
    db = create_database(native_stack)
    settings = isolate(dataclasses.replace(native_stack.settings, postgres=db.postgres),
                       topic_maker(native_stack, topics))
    tmp = tmp_path_factory.mktemp("demo")
    slack = SlackStub()
    env = {**env_for(settings),
           "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp / "checkpoints"),
           "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_BASE_URL": slack.base_url,
           "APT_ENERGY_RULES_THRESHOLDS_ELECTRICITY_WARNING": "230"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "apt_energy", "demo", "--households", "20", "--months", "2", "--interval", "6h",
             "--output", str(tmp / "demo")],
            env=env, capture_output=True, text=True, timeout=600)
        yield DemoRun(settings, result, slack, tmp / "demo")
    finally:
        slack.close()
        drop_databases(native_stack, [db.postgres.database])
        delete_topics(native_stack, topics)


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


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One SparkSession for the whole run (a JVM holds one, and getOrCreate hands the first one to every
    later caller): local, with the Kafka connector jars. The stream job, the transforms and the forecast
    job all run on it."""
    from apt_energy.spark.job import build_session
    from apt_energy.stack.jars import spark_kafka_jars

    settings = config.load()
    session = build_session(settings, jars=spark_kafka_jars(settings.cache_dir))
    yield session
    session.stop()


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    """A local stand-in for Slack's Web API (tests/slack_stub.py), closed afterwards."""
    stub = SlackStub()
    yield stub
    stub.close()
