"""Prepare servers this project does not start itself (docker compose, managed PostgreSQL and Kafka):
roles and database as the PostgreSQL superuser, migrations and seed as the writer, Kafka topics.

``apt-energy stack init`` runs it; compose runs that once before the pipeline's services start. Each
step is idempotent, so re-running it (every ``compose up``) changes nothing that is already right.
"""

from __future__ import annotations

import logging
import time

import psycopg

from config import Settings
from database import connect, migrate, seed
from stack.errors import StackError
from stack.kafka import ensure_topics
from stack.postgres import admin_connect, provision

logger = logging.getLogger(__name__)


def wait_for_servers(settings: Settings, *, timeout_s: float = 120) -> None:
    """Compose's healthchecks usually make this instant; a managed server may take longer to accept us."""
    from confluent_kafka.admin import AdminClient

    deadline = time.monotonic() + timeout_s
    pg, last = settings.postgres, ""
    while True:
        try:
            with admin_connect(settings, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            break
        except psycopg.OperationalError as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if "password authentication failed" in last:
                raise StackError(f"PostgreSQL at {pg.host}:{pg.port} refused the superuser postgres: wrong "
                                 "APT_ENERGY_DB_ADMIN_PASSWORD (it must be the one the server was created "
                                 "with)") from exc
        if time.monotonic() > deadline:
            raise StackError(f"PostgreSQL at {pg.host}:{pg.port} did not accept the superuser within "
                             f"{timeout_s:.0f} s: {last} (check APT_ENERGY_DB_ADMIN_PASSWORD)")
        time.sleep(1)
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    while True:
        try:
            if admin.list_topics(timeout=3).brokers:
                return
        except Exception as exc:  # noqa: BLE001 - any client error means "not reachable yet"
            last = str(exc)
        if time.monotonic() > deadline:
            raise StackError(f"Kafka at {settings.kafka.bootstrap} not reachable within {timeout_s:.0f} s {last}")
        time.sleep(1)


def prepare(settings: Settings) -> list[int]:
    """Everything the pipeline's services expect to exist; returns the migrations applied now."""
    wait_for_servers(settings)
    provision(settings)
    with connect(settings) as conn:
        applied = migrate(conn, reader_role=settings.postgres.reader_user)
        seed(conn, settings)
    ensure_topics(settings)
    logger.info("prepared postgres=%s:%d/%s kafka=%s migrations_applied=%s", settings.postgres.host,
                settings.postgres.port, settings.postgres.database, settings.kafka.bootstrap, applied or "none")
    return applied
