"""Prepare servers this project does not start itself (docker compose, managed PostgreSQL and Kafka):
roles and database as the PostgreSQL superuser, migrations and seed as the writer, Kafka topics.

``apt-energy stack init`` runs it; compose runs that once before the pipeline's services start. Each
step is idempotent, so re-running it (every ``compose up``) changes nothing that is already right.
"""

from __future__ import annotations

import logging

import psycopg
from apt_energy.config import Settings
from apt_energy.config.settings import PostgresSettings
from apt_energy.core.errors import ServiceError
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect, migrate, roles, seed
from apt_energy.stack.kafka import KafkaAdmin, broker_reachable, ensure_principals, ensure_topics
from apt_energy.stack.postgres import DatabaseLogins, admin_connect, provision
from apt_energy.stack.process import wait_until

logger = logging.getLogger(__name__)


def _postgres_accepts_superuser(pg: PostgresSettings) -> bool:
    try:
        with admin_connect(pg, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError as exc:
        if "password authentication failed" in str(exc):  # not transient: waiting will not help
            raise ServiceError(f"PostgreSQL at {pg.host}:{pg.port} refused the superuser postgres: wrong "
                             "APT_ENERGY_DB_ADMIN_PASSWORD (it must be the one the server was created "
                             "with)") from exc
        return False


def wait_for_servers(settings: Settings, *, timeout_s: float = 120) -> None:
    """Compose's healthchecks usually make this instant; a managed server may take longer to accept us."""
    pg = settings.postgres
    wait_until(lambda: _postgres_accepts_superuser(pg), timeout=timeout_s,
               what=f"PostgreSQL at {pg.host}:{pg.port} (superuser postgres)")
    wait_until(lambda: broker_reachable(KafkaClient.from_settings(settings, "admin")), timeout=timeout_s,
               what=f"Kafka at {settings.kafka.bootstrap}")


def prepare(settings: Settings) -> list[int]:
    """Everything the pipeline's services expect to exist; returns the migrations applied now."""
    wait_for_servers(settings)
    provision(DatabaseLogins.from_settings(settings))
    with connect(settings, role="owner") as conn:
        applied = migrate(conn, roles=roles(settings))
        seed(conn, settings)
    cluster = KafkaAdmin.from_settings(settings)
    if settings.kafka.security_protocol != "PLAINTEXT":
        ensure_principals(cluster)
    ensure_topics(cluster)
    logger.info("prepared postgres=%s:%d/%s kafka=%s migrations_applied=%s", settings.postgres.host,
                settings.postgres.port, settings.postgres.database, settings.kafka.bootstrap, applied or "none")
    return applied
