"""Least privilege in PostgreSQL: three roles, each with only what its job needs.

- **owner** (``postgres.owner_user``): owns the database and every object; runs migrations and seeds.
  Nothing long-running logs in as it.
- **writer** (``postgres.writer_user``): the Spark sink and the notifier. DML on the pipeline's tables,
  read-only on the reference tables (complex layout, factors, migrations), TEMP for the sink's staging
  tables; no DDL, no TRUNCATE, no CREATEDB/CREATEROLE.
- **reader** (``postgres.reader_user``): Grafana. SELECT only, no TEMP, no advisory locks (the migration
  lock), no ``pg_sleep``, no large objects or notifications, a connection limit, and timeouts on
  statements and idle transactions, so a dashboard viewer cannot hold the database.

Connection limits leave room for each other: reader + writer + the owner's reserve + the superuser's
reserved slots fit in ``max_connections`` (:func:`connection_budget`). No role but the superuser may
connect to ``postgres`` or ``template1`` (where this database's revoked functions and timeouts would not
apply); ``template1`` gets the same function revokes, so every database created from it starts closed.

What a session cannot lift and what it can (PostgreSQL 15): ``CONNECTION LIMIT`` needs CREATEROLE to
change, revoked functions need a GRANT, so both hold. ``statement_timeout`` and
``idle_in_transaction_session_timeout`` are user-settable parameters: any session may ``SET`` them, and
any role may ``ALTER ROLE <itself> [IN DATABASE …] SET`` them (``REVOKE SET ON PARAMETER`` only governs
superuser-only parameters, and no event trigger fires on roles). So they are defaults, re-imposed here:
:func:`harden_database` first ``RESET ALL`` of the reader's own per-role and per-database settings (what
it set on itself is gone at the next ``stack up``/``stack init``), and the connection limit bounds what
a session that lifted its timeouts can hold. See SECURITY.md.

Passwords never travel as SQL text: the role's SCRAM-SHA-256 verifier is computed here (RFC 5802/7677,
as libpq's ``PQencryptPasswordConn`` does) and only the verifier reaches the server and its logs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass

import psycopg
from apt_energy.config import Secret
from apt_energy.core.errors import ServiceError
from psycopg import sql

logger = logging.getLogger(__name__)

SCRAM_ITERATIONS = 4096
# Written only by the owner: what the complex looks like and how usage is converted and migrated.
REFERENCE_TABLES = ("schema_migrations", "buildings", "households", "energy_types", "emission_factors")
# Functions PUBLIC may call by default (or that a later package could open) that no dashboard needs, by
# name in pg_catalog (every overload): sleeping holds a connection and a snapshot; any advisory lock,
# shared or not, tried or not, session or transaction, can make the migrator's lock wait; large objects
# are writes (lo_create/lo_put/lowrite) a SELECT-only role must not make; notifications reach every
# listener; the file, directory and log readers (superuser or pg_read_server_files already) and dblink's
# (contrib, not installed) are listed so no GRANT or CREATE EXTENSION later reopens them.
RESTRICTED_FUNCTION_NAMES = (
    "pg_sleep", "pg_sleep_for", "pg_sleep_until",
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared",
    "pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_try_advisory_xact_lock",
    "pg_try_advisory_xact_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared",
    "pg_advisory_unlock_all",
    "lo_create", "lo_creat", "lo_open", "lo_close", "lo_import", "lo_export", "lo_unlink", "lo_put", "lo_get",
    "lo_from_bytea", "lo_truncate", "lo_truncate64", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64",
    "loread", "lowrite",
    "pg_notify",
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
    "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_current_logfile",
    "dblink", "dblink_connect", "dblink_connect_u", "dblink_exec", "dblink_send_query",
)
# What the owner (migrations: the exclusive transaction lock) and the writer (a transaction-scoped lock,
# released at commit, for its own keys) are given back. Nothing sleeps or takes a session-level lock.
OWNER_FUNCTIONS = ("pg_advisory_xact_lock(bigint)",)
WRITER_FUNCTIONS = ("pg_advisory_xact_lock(bigint)", "pg_advisory_xact_lock(integer,integer)")
# The superuser's own slots (PostgreSQL's superuser_reserved_connections) and the owner's (migrations,
# seeds, `stack init`): never taken by the reader's or the writer's connections.
SUPERUSER_RESERVED = 3
OWNER_RESERVE = 10


@dataclass(frozen=True)
class Roles:
    owner: str
    writer: str
    reader: str
    reader_statement_timeout_s: int = 10
    reader_idle_in_transaction_timeout_s: int = 30
    reader_connection_limit: int = 20      # Grafana's pool (maxOpenConns 10) and a few psql sessions
    writer_connection_limit: int = 150


def connection_budget(roles: Roles, max_connections: int) -> None:
    """Refuse limits that would let the reader and the writer together take the owner's or the
    superuser's slots."""
    used = roles.reader_connection_limit + roles.writer_connection_limit + OWNER_RESERVE + SUPERUSER_RESERVED
    if roles.reader_connection_limit < 1 or roles.writer_connection_limit < 1 or used > max_connections:
        raise ServiceError(f"postgres.reader_connection_limit ({roles.reader_connection_limit}) + "
                           f"writer_connection_limit ({roles.writer_connection_limit}) + {OWNER_RESERVE} (owner) + "
                           f"{SUPERUSER_RESERVED} (superuser) must be at most max_connections ({max_connections})",
                           service="postgresql")


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
    writer, the reader's timeouts (what it set on itself here dropped first), and the restricted functions
    closed to every role but what the owner and the writer are given back.

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
    # A role may ALTER ROLE itself IN DATABASE … SET (PostgreSQL allows it for user-settable parameters):
    # whatever the reader set on itself goes before ours are set again.
    admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(reader, db))
    for name, value in reader_settings(roles):
        admin.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} = {}").format(
            reader, db, sql.Identifier(name), sql.Literal(value)))
    revoke_restricted_functions(admin, roles)
    for fn in OWNER_FUNCTIONS:
        admin.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION pg_catalog.{fn} TO {{}}").format(owner))
    for fn in WRITER_FUNCTIONS:
        admin.execute(sql.SQL(f"GRANT EXECUTE ON FUNCTION pg_catalog.{fn} TO {{}}").format(writer))


def reader_settings(roles: Roles) -> list[tuple[str, str]]:
    """The reader's session defaults: a statement and an idle-transaction timeout (an open transaction
    holds its locks, e.g. against a migration's ALTER TABLE)."""
    return [("statement_timeout", f"{roles.reader_statement_timeout_s}s"),
            ("idle_in_transaction_session_timeout", f"{roles.reader_idle_in_transaction_timeout_s}s")]


def restricted_functions(conn: psycopg.Connection) -> list[str]:
    """Every installed overload of :data:`RESTRICTED_FUNCTION_NAMES` in this database, as regprocedure text."""
    rows = conn.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.proname = ANY(%s) ORDER BY 1",
                        (list(RESTRICTED_FUNCTION_NAMES),)).fetchall()
    return [str(r[0]) for r in rows]


def revoke_restricted_functions(admin: psycopg.Connection, roles: Roles | None = None) -> None:
    """As the superuser, in the database ``admin`` is connected to: no role may execute the restricted
    functions (the caller grants back what the owner and writer need)."""
    names = [sql.Identifier(r) for r in ((roles.owner, roles.writer, roles.reader) if roles else ())]
    grantees = sql.SQL(", ").join([sql.SQL("PUBLIC"), *names])
    for fn in restricted_functions(admin):
        admin.execute(sql.SQL(f"REVOKE EXECUTE ON FUNCTION {fn} FROM {{}}").format(grantees))


def server_connection_slots(admin: psycopg.Connection) -> int:
    """``max_connections`` of the server ``admin`` is connected to (the native stack's, or compose's image
    default)."""
    (value,) = admin.execute("SHOW max_connections").fetchone()  # type: ignore[misc]
    return int(value)


def fitted(roles: Roles, max_connections: int) -> Roles:
    """``roles`` with the writer's limit lowered, if need be, so that the reader's and the writer's limits
    leave the owner's and the superuser's slots free on a server with ``max_connections``."""
    room = max_connections - roles.reader_connection_limit - OWNER_RESERVE - SUPERUSER_RESERVED
    if room < roles.writer_connection_limit:
        logger.warning("writer connection limit lowered from %d to %d to fit max_connections=%d",
                       roles.writer_connection_limit, room, max_connections)
        roles = dataclasses.replace(roles, writer_connection_limit=room)
    connection_budget(roles, max_connections)
    return roles


def limit_roles(admin: psycopg.Connection, roles: Roles, *, max_connections: int | None = None) -> None:
    """As the superuser, cluster-wide: each role's connection limit (changing it needs CREATEROLE, which
    neither has) within the server's ``max_connections`` (:func:`fitted`), and the reader's timeouts for
    every database, after dropping what it set on itself."""
    roles = fitted(roles, server_connection_slots(admin) if max_connections is None else max_connections)
    writer, reader = sql.Identifier(roles.writer), sql.Identifier(roles.reader)
    admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
        reader, sql.Literal(roles.reader_connection_limit)))
    admin.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(
        writer, sql.Literal(roles.writer_connection_limit)))
    admin.execute(sql.SQL("ALTER ROLE {} RESET ALL").format(reader))
    for name, value in reader_settings(roles):
        admin.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(reader, sql.Identifier(name), sql.Literal(value)))


# The superuser's maintenance databases: our roles need neither, and there this database's revoked
# functions and per-database timeouts would not hold.
MAINTENANCE_DATABASES = ("postgres", "template1")


def close_maintenance_databases(admin: psycopg.Connection) -> None:
    """As the superuser: no CONNECT or TEMP for PUBLIC on ``postgres`` and ``template1``, and the
    restricted functions revoked in ``template1`` so every database created from it starts closed.
    ``admin`` is connected to ``template1``."""
    for name in MAINTENANCE_DATABASES:
        admin.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    revoke_restricted_functions(admin)


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
