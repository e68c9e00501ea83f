"""Connections as the pipeline's writer or Grafana's read-only role."""

from __future__ import annotations

from typing import Literal

import psycopg
from apt_energy.config import Settings
from apt_energy.database.roles import Roles

from apt_energy.errors import ServiceError

Role = Literal["owner", "writer", "reader"]


def roles(settings: Settings) -> Roles:
    pg = settings.postgres
    return Roles(owner=pg.owner_user, writer=pg.writer_user, reader=pg.reader_user,
                 reader_statement_timeout_s=pg.reader_statement_timeout_s,
                 reader_idle_in_transaction_timeout_s=pg.reader_idle_in_transaction_timeout_s,
                 reader_connection_limit=pg.reader_connection_limit,
                 writer_connection_limit=pg.writer_connection_limit)


def conninfo(settings: Settings, *, role: Role = "writer", dbname: str | None = None) -> str:
    """A libpq connection string (password included: never log it)."""
    pg, secrets = settings.postgres, settings.secrets
    user, secret = {"owner": (pg.owner_user, secrets.db_owner_password),
                    "writer": (pg.writer_user, secrets.db_password),
                    "reader": (pg.reader_user, secrets.db_reader_password)}[role]
    return psycopg.conninfo.make_conninfo(host=pg.host, port=pg.port, dbname=dbname or pg.database, user=user,
                                          password=secret.reveal(), connect_timeout=10,
                                          application_name="apt-energy")


def connect(settings: Settings, *, role: Role = "writer", dbname: str | None = None,
            autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo(settings, role=role, dbname=dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        pg = settings.postgres
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"cannot connect to PostgreSQL at {pg.host}:{pg.port}/{dbname or pg.database} as "
                            f"{role}: {first} (is the stack up? `apt-energy stack up`)") from exc
