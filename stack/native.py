"""The whole native stack: Mosquitto, PostgreSQL (migrated and seeded) and Kafka (one broker, or a KRaft
cluster of ``stack.kafka_brokers``), up, down, status."""

from __future__ import annotations

import logging

from apt_energy.config import Settings
from apt_energy.database import connect, migrate, roles, seed
from apt_energy.stack.jars import kafka_jars, spark_kafka_jars
from apt_energy.stack.kafka import Kafka
from apt_energy.stack.kafka_cluster import KafkaCluster
from apt_energy.stack.mosquitto import Mosquitto
from apt_energy.stack.postgres import Postgres, provision
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
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
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

    def down(self) -> None:
        # Reverse order: producers of traffic first, storage last.
        for service in reversed(self.services):
            service.down()
            logger.info("%s stopped", service.name)

    def status(self) -> list[ServiceStatus]:
        """One row per service, and one per Kafka node of a cluster."""
        rows = [self.mosquitto.status(), self.postgres.status()]
        return rows + (self.kafka.node_statuses() if isinstance(self.kafka, KafkaCluster) else [self.kafka.status()])
