"""Least privilege in PostgreSQL: three roles, each with only what its job needs.

- **owner** (``postgres.owner_user``): owns the database and every object; runs migrations and seeds.
  Nothing long-running logs in as it.
- **writer** (``postgres.writer_user``): the Spark sink and the notifier. DML on the pipeline's tables,
  read-only on the reference tables (complex layout, factors, migrations), TEMP for the sink's staging
  tables; no DDL, no TRUNCATE, no CREATEDB/CREATEROLE.
- **reader** (``postgres.reader_user``): Grafana. SELECT only, no TEMP, no advisory locks (the migration
  lock), no ``pg_sleep``, and a statement timeout, so a dashboard viewer cannot hold the database.

Passwords never travel as SQL text: the role's SCRAM-SHA-256 verifier is computed here (RFC 5802/7677,
as libpq's ``PQencryptPasswordConn`` does) and only the verifier reaches the server and its logs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

import psycopg
from apt_energy.config import Secret
from psycopg import sql

from apt_energy.errors import ServiceError

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS = 4096
# Written only by the owner: what the complex looks like and how usage is converted and migrated.
REFERENCE_TABLES = ("schema_migrations", "buildings", "households", "energy_types", "emission_factors")
# Functions every role could call by default that a dashboard viewer must not: sleeping holds a
# connection and a snapshot, advisory locks could block the migrator.
RESTRICTED_FUNCTIONS = (
    "pg_sleep(double precision)", "pg_sleep_for(interval)", "pg_sleep_until(timestamp with time zone)",
    "pg_advisory_lock(bigint)", "pg_advisory_lock(integer, integer)",
    "pg_advisory_lock_shared(bigint)", "pg_advisory_lock_shared(integer, integer)",
    "pg_advisory_xact_lock(bigint)", "pg_advisory_xact_lock(integer, integer)",
    "pg_advisory_xact_lock_shared(bigint)", "pg_advisory_xact_lock_shared(integer, integer)",
    "pg_try_advisory_lock(bigint)", "pg_try_advisory_lock(integer, integer)",
    "pg_try_advisory_xact_lock(bigint)", "pg_try_advisory_xact_lock(integer, integer)",
)


@dataclass(frozen=True)
class Roles:
    owner: str
    writer: str
    reader: str
    reader_statement_timeout_s: int = 10


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, the form ``pg_authid`` stores."""
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return (f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}$"
            f"{b64(stored_key).decode()}:{b64(server_key).decode()}")


def ensure_role(admin: psycopg.Connection, role: str, password: Secret) -> None:
    """Create or update a login role with no special attributes; its password set as a verifier."""
    if not password:
        raise ServiceError(f"no password for PostgreSQL role {role}", service="postgresql")
    exists = admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    admin.execute(sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                          "NOBYPASSRLS PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(scram_verifier(password.reveal()))))


def harden_database(admin: psycopg.Connection, database: str, roles: Roles) -> None:
    """As the superuser: the database belongs to the owner, only our roles connect, TEMP only for the
    writer, the reader's timeout, and the restricted functions closed to everyone but owner and writer.

    ``admin`` must be connected to ``database`` (function privileges are per database)."""
    db, owner, writer, reader = (sql.Identifier(x) for x in (database, roles.owner, roles.writer, roles.reader))
    admin.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, owner))
    # Databases made before the owner role existed belonged to the writer: hand its objects over.
    admin.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(writer, owner))
    admin.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(owner))
    admin.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
    admin.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    admin.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}, {}").format(db, writer, reader))
    admin.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(db, writer))
    admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = {}").format(
        reader, db, sql.Literal(f"{roles.reader_statement_timeout_s}s")))
    for fn in RESTRICTED_FUNCTIONS:
        admin.execute(sql.SQL(f"REVOKE EXECUTE ON FUNCTION pg_catalog.{fn} FROM PUBLIC"))
        admin.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION pg_catalog.{fn} TO {{}}, {{}}").format(owner, writer))


def grant_tables(conn: psycopg.Connection, roles: Roles) -> None:
    """As the owner, after migrations: table privileges now and for tables later migrations add."""
    writer, reader = sql.Identifier(roles.writer), sql.Identifier(roles.reader)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}, {}").format(writer, reader))
    conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}, {}").format(writer, reader))
    conn.execute(sql.SQL("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(writer))
    conn.execute(sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(writer))
    for table in REFERENCE_TABLES:
        conn.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE {} FROM {}").format(
            sql.Identifier(table), writer))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {}, {}").format(
        writer, reader))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT INSERT, UPDATE, DELETE ON TABLES "
                         "TO {}").format(writer))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES "
                         "TO {}").format(writer))
    logger.info("granted writer=%s reader=%s", roles.writer, roles.reader)
