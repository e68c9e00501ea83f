"""Connections as the pipeline's writer or Grafana's read-only role."""

from __future__ import annotations

from typing import Literal

import psycopg
from apt_energy.config import Settings

from apt_energy.errors import ServiceError


def conninfo(settings: Settings, *, role: Literal["writer", "reader"] = "writer", dbname: str | None = None) -> str:
    """A libpq connection string (password included: never log it)."""
    pg = settings.postgres
    user = pg.writer_user if role == "writer" else pg.reader_user
    secret = settings.secrets.db_password if role == "writer" else settings.secrets.db_reader_password
    return psycopg.conninfo.make_conninfo(host=pg.host, port=pg.port, dbname=dbname or pg.database, user=user,
                                          password=secret.reveal(), connect_timeout=10,
                                          application_name="apt-energy")


def connect(settings: Settings, *, role: Literal["writer", "reader"] = "writer", dbname: str | None = None,
            autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo(settings, role=role, dbname=dbname), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        pg = settings.postgres
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ServiceError(f"cannot connect to PostgreSQL at {pg.host}:{pg.port}/{dbname or pg.database} as "
                            f"{role}: {first} (is the stack up? `apt-energy stack up`)") from exc
