"""The whole native stack: Mosquitto, PostgreSQL (migrated and seeded) and Kafka (one broker, or a KRaft
cluster of ``stack.kafka_brokers``), up, down, status."""

from __future__ import annotations

import dataclasses
import logging

from apt_energy.config import Settings
from apt_energy.database import connect, migrate, roles, seed
from apt_energy.stack.jars import kafka_jars, spark_kafka_jars
from apt_energy.stack.kafka import Kafka
from apt_energy.stack.kafka_cluster import KafkaCluster
from apt_energy.stack.mosquitto import Mosquitto, clear_retained
from apt_energy.stack.postgres import Postgres, provision
from apt_energy.stack.private import private_dir
from apt_energy.stack.service import Service, ServiceStatus

logger = logging.getLogger(__name__)


class NativeStack:
    """Real services on 127.0.0.1 under ``settings.run_dir``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mosquitto = Mosquitto(settings)
        self.postgres = Postgres(settings)
        self.kafka: Kafka | KafkaCluster = Kafka(settings) if settings.stack.kafka_brokers == 1 else KafkaCluster(
            settings)

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.mosquitto, self.postgres, self.kafka)

    def fetch(self) -> None:
        """Fetch every jar the stack and the Spark job need (a no-op once cached)."""
        kafka_jars(self.settings.cache_dir)
        spark_kafka_jars(self.settings.cache_dir)

    def up(self) -> None:
        # not listable by other local users; the servers' own users pass through to their directories
        private_dir(self.settings.run_dir, traversable=True)
        self.fetch()
        self.mosquitto.up()
        self.postgres.up()
        provision(self.settings)
        self.migrate()
        self.kafka.up()

    def migrate(self) -> list[int]:
        with connect(self.settings, role="owner") as conn:
            applied = migrate(conn, roles=roles(self.settings))
            seed(conn, self.settings)
        return applied

    def withdraw_test_grants(self) -> None:
        """The broker back to the user's own rights: the retained messages tests and benchmarks left under
        ``<mqtt.test_prefix_root>/#`` deleted, and the broker restarted without the test-only grants."""
        root = self.settings.mqtt.test_prefix_root
        if not root:
            return
        clear_retained(self.settings, f"{root}/#")
        plain = dataclasses.replace(self.settings, mqtt=dataclasses.replace(self.settings.mqtt, test_prefix_root=""))
        Mosquitto(plain).up()  # its rights differ from the running broker's: restarted

    def down(self) -> None:
        # Reverse order: producers of traffic first, storage last.
        for service in reversed(self.services):
            service.down()
            logger.info("%s stopped", service.name)

    def status(self) -> list[ServiceStatus]:
        """One row per service, and one per Kafka node of a cluster."""
        rows = [self.mosquitto.status(), self.postgres.status()]
        return rows + (self.kafka.node_statuses() if isinstance(self.kafka, KafkaCluster) else [self.kafka.status()])
