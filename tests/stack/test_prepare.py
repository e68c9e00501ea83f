"""`apt-energy stack init` (what compose's init service runs) against the real PostgreSQL and Kafka."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from apt_energy.config import Settings
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect
from apt_energy.stack import NativeStack
from confluent_kafka.admin import AdminClient, ConfigResource

from tests.conftest import delete_topics, drop_databases, env_for

pytestmark = pytest.mark.integration


@pytest.fixture
def blank(native_stack: NativeStack) -> Iterator[Settings]:
    """Settings naming a database and topics that do not exist yet."""
    tag = uuid.uuid4().hex[:10]
    s = native_stack.settings
    settings = dataclasses.replace(
        s, postgres=dataclasses.replace(s.postgres, database=f"t_init_{tag}"),
        kafka=dataclasses.replace(s.kafka, readings_topic=f"init.{tag}.readings", devices_topic=f"init.{tag}.devices",
                                  dead_letter_topic=f"init.{tag}.dlq"))
    yield settings
    drop_databases(native_stack, [settings.postgres.database])
    k = settings.kafka
    delete_topics(native_stack, [k.readings_topic, k.devices_topic, k.dead_letter_topic])


def test_init_creates_database_schema_seed_and_topics_and_a_second_run_changes_nothing(blank: Settings) -> None:
    env = env_for(blank)
    first = subprocess.run([sys.executable, "-m", "apt_energy", "stack", "init"], env=env, capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    from apt_energy.database.migrate import discover

    assert f"migrations ({', '.join(f'{m.version:04d}' for m in discover())})" in first.stdout
    with connect(blank, role="reader") as conn:  # the reader can read what the owner migrated
        assert conn.execute("SELECT count(*) FROM households").fetchone() == (840,)
    k = blank.kafka
    admin = AdminClient(KafkaClient.from_settings(blank, "admin").config())
    topics = admin.list_topics(timeout=10).topics
    assert {k.readings_topic, k.devices_topic, k.dead_letter_topic} <= set(topics)
    assert len(topics[k.readings_topic].partitions) == k.partitions
    resource = ConfigResource("topic", k.devices_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"
    second = subprocess.run([sys.executable, "-m", "apt_energy", "stack", "init"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_init_names_the_admin_password_when_postgres_refuses_it(blank: Settings) -> None:
    env = {**env_for(blank), "APT_ENERGY_DB_ADMIN_PASSWORD": "wrong"}
    result = subprocess.run([sys.executable, "-m", "apt_energy", "stack", "init"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "APT_ENERGY_DB_ADMIN_PASSWORD" in result.stderr and len(result.stderr.strip().splitlines()) == 1
