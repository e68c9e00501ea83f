"""The whole native stack: Mosquitto, PostgreSQL (migrated and seeded) and Kafka (one broker, or a KRaft
cluster of ``stack.kafka_brokers``), up, down, status."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from apt_energy.config import ComplexSettings, EnergyType, Settings
from apt_energy.database import DatabaseLogin, migrate, seed_complex
from apt_energy.database.connection import postgres_roles
from apt_energy.stack.jars import kafka_jars, spark_kafka_jars
from apt_energy.stack.kafka import Kafka, KafkaOptions
from apt_energy.stack.kafka_cluster import KafkaCluster
from apt_energy.stack.mosquitto import Mosquitto, MosquittoOptions, clear_retained
from apt_energy.stack.postgres import DatabaseLogins, Postgres, provision
from apt_energy.stack.private import private_dir
from apt_energy.stack.service import Service, ServiceStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackOptions:
    """What the native stack runs and provisions: each service's options, the database's roles (it creates
    them), and the complex and energy types it seeds. Built at one door, :meth:`from_settings`."""

    run_dir: Path
    cache_dir: Path
    mosquitto: MosquittoOptions
    kafka: KafkaOptions
    database: DatabaseLogins
    complex: ComplexSettings
    energy: dict[str, EnergyType]

    @classmethod
    def from_settings(cls, settings: Settings) -> StackOptions:
        return cls(settings.run_dir, settings.cache_dir, MosquittoOptions.from_settings(settings),
                   KafkaOptions.from_settings(settings), DatabaseLogins.from_settings(settings),
                   settings.complex, settings.energy)


class NativeStack:
    """Real services on 127.0.0.1 under the run dir."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.mosquitto = Mosquitto(options.mosquitto)
        self.postgres = Postgres(options.database.postgres, run_dir=options.run_dir)
        self.kafka: Kafka | KafkaCluster = (Kafka(options.kafka) if options.kafka.cluster.brokers == 1
                                            else KafkaCluster(options.kafka))

    @classmethod
    def from_settings(cls, settings: Settings) -> NativeStack:
        return cls(StackOptions.from_settings(settings))

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.mosquitto, self.postgres, self.kafka)

    def fetch(self) -> None:
        """Fetch every jar the stack and the Spark job need (a no-op once cached)."""
        kafka_jars(self.options.cache_dir)
        spark_kafka_jars(self.options.cache_dir)

    def up(self) -> None:
        # not listable by other local users; the servers' own users pass through to their directories
        private_dir(self.options.run_dir, traversable=True)
        self.fetch()
        self.mosquitto.up()
        self.postgres.up()
        provision(self.options.database)
        self.migrate()
        self.kafka.up()

    def migrate(self) -> list[int]:
        db = self.options.database
        with DatabaseLogin(db.postgres, "owner", db.owner_password).connect() as conn:
            applied = migrate(conn, roles=postgres_roles(db.postgres))
            seed_complex(conn, self.options.complex, self.options.energy)
        return applied

    def withdraw_test_grants(self) -> None:
        """The broker back to the user's own rights: the retained messages tests and benchmarks left under
        ``<mqtt.test_prefix_root>/#`` deleted, and the broker restarted without the test-only grants."""
        broker = self.options.mosquitto
        root = broker.mqtt.test_prefix_root
        if not root:
            return
        clear_retained(broker, f"{root}/#")
        plain = dataclasses.replace(broker, mqtt=dataclasses.replace(broker.mqtt, test_prefix_root=""))
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
