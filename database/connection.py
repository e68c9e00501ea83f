"""Connections as the pipeline's writer or Grafana's read-only role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg
from apt_energy.config import Secret, Settings
from apt_energy.config.settings import PostgresSettings
from apt_energy.core.errors import ServiceError
from apt_energy.database.roles import Roles

Role = Literal["owner", "writer", "reader"]


def roles(settings: Settings) -> Roles:
    return postgres_roles(settings.postgres)


def postgres_roles(pg: PostgresSettings) -> Roles:
    """The pipeline's roles and their limits, from the ``postgres`` section."""
    return Roles(owner=pg.owner_user, writer=pg.writer_user, reader=pg.reader_user,
                 reader_statement_timeout_s=pg.reader_statement_timeout_s,
                 reader_idle_in_transaction_timeout_s=pg.reader_idle_in_transaction_timeout_s,
                 reader_connection_limit=pg.reader_connection_limit,
                 writer_connection_limit=pg.writer_connection_limit)


@dataclass(frozen=True)
class DatabaseLogin:
    """One role's connection to the pipeline's database: the ``postgres`` section and that role's password
    (masked in ``repr``). What a component that connects keeps instead of the settings."""

    postgres: PostgresSettings
    role: Role
    password: Secret

    @classmethod
    def from_settings(cls, settings: Settings, role: Role = "writer") -> DatabaseLogin:
        """The door: ``role``'s login from the settings tree."""
        s = settings.secrets
        password = {"owner": s.db_owner_password, "writer": s.db_password, "reader": s.db_reader_password}[role]
        return cls(settings.postgres, role, password)

    @property
    def user(self) -> str:
        pg = self.postgres
        return {"owner": pg.owner_user, "writer": pg.writer_user, "reader": pg.reader_user}[self.role]

    def conninfo(self, *, dbname: str | None = None) -> str:
        """A libpq connection string (password included: never log it)."""
        pg = self.postgres
        return psycopg.conninfo.make_conninfo(host=pg.host, port=pg.port, dbname=dbname or pg.database,
                                              user=self.user, password=self.password.reveal(), connect_timeout=10,
                                              application_name="apt-energy")

    def connect(self, *, dbname: str | None = None, autocommit: bool = False) -> psycopg.Connection:
        try:
            return psycopg.connect(self.conninfo(dbname=dbname), autocommit=autocommit)
        except psycopg.OperationalError as exc:
            pg = self.postgres
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ServiceError(f"cannot connect to PostgreSQL at {pg.host}:{pg.port}/{dbname or pg.database} as "
                               f"{self.role}: {first} (is the stack up? `apt-energy stack up`)") from exc


def conninfo(settings: Settings, *, role: Role = "writer", dbname: str | None = None) -> str:
    """A libpq connection string (password included: never log it)."""
    return DatabaseLogin.from_settings(settings, role).conninfo(dbname=dbname)


def connect(settings: Settings, *, role: Role = "writer", dbname: str | None = None,
            autocommit: bool = False) -> psycopg.Connection:
    return DatabaseLogin.from_settings(settings, role).connect(dbname=dbname, autocommit=autocommit)
