"""Attempts on PostgreSQL with the pipeline's own credentials: each must be refused (real server)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.core.errors import ServiceError
from apt_energy.database import connect, migrate, roles
from apt_energy.database.migrate import _LOCK_KEY, MIGRATIONS_DIR
from apt_energy.database.roles import (
    OWNER_FUNCTIONS,
    OWNER_RESERVE,
    SUPERUSER_RESERVED,
    WRITER_FUNCTIONS,
    harden_database,
    limit_roles,
    restricted_functions,
    scram_verifier,
)
from apt_energy.stack import NativeStack
from apt_energy.stack.postgres import MAX_CONNECTIONS
from psycopg import sql

from tests.conftest import create_database, drop_databases

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("statement", [
    "CREATE TABLE evil (x int)",
    "DROP TABLE alerts",
    "TRUNCATE meter_readings",
    "ALTER TABLE energy_usage ADD COLUMN evil int",
    "CREATE DATABASE evil",
    "CREATE ROLE evil",
    "INSERT INTO emission_factors (energy_type, valid_from, factor) VALUES ('electricity', '1999-01-01', 0)",
    "DELETE FROM schema_migrations",
    "UPDATE households SET floor = 0",
])
def test_the_writer_has_no_ddl_and_cannot_touch_reference_data(fresh_db: Settings, statement: str) -> None:
    # autocommit: CREATE DATABASE may not run in a transaction, and the refusal must be about privilege
    with connect(fresh_db, autocommit=True) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_writer_still_does_its_job(fresh_db: Settings) -> None:
    with connect(fresh_db) as conn:
        conn.execute("CREATE TEMP TABLE staging (x int)")  # the sink stages batches in TEMP tables
        conn.execute("SELECT pg_advisory_xact_lock(1)")
        conn.execute("DELETE FROM quarantine WHERE false")


@pytest.mark.parametrize("statement", [
    "INSERT INTO alerts (household_id) VALUES (1)",
    "DELETE FROM energy_usage",
    "CREATE TEMP TABLE t (x int)",
    "SELECT pg_advisory_lock(1634760805)",
    "SELECT pg_advisory_xact_lock(1634760805)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_sleep(0)",
    "CREATE TABLE evil (x int)",
])
def test_the_reader_reads_and_nothing_else(fresh_db: Settings, statement: str) -> None:
    with connect(fresh_db, role="reader") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_the_reader_has_a_statement_timeout(fresh_db: Settings) -> None:
    with connect(fresh_db, role="reader") as conn:
        (timeout,) = conn.execute("SHOW statement_timeout").fetchone()  # type: ignore[misc]
        assert timeout == f"{fresh_db.postgres.reader_statement_timeout_s}s"
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT count(*) FROM generate_series(1, 10000000000)")


@pytest.mark.parametrize("dbname", ["postgres", "template1"])
@pytest.mark.parametrize("role", ["owner", "writer", "reader"])
def test_no_project_role_may_connect_to_the_maintenance_database(native_stack: NativeStack, role: str,
                                                                  dbname: str) -> None:
    # template1 too (issue 28): there the pipeline database's revoked functions and timeouts do not hold
    with pytest.raises(ServiceError, match="permission denied for database"):
        connect(native_stack.settings, role=role, dbname=dbname)  # type: ignore[arg-type]


def test_wrong_passwords_are_refused_for_every_role(fresh_db: Settings) -> None:
    pg = fresh_db.postgres
    for user in (pg.owner_user, pg.writer_user, pg.reader_user, "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(host=pg.host, port=pg.port, dbname=pg.database, user=user, password="change-me",
                            connect_timeout=5)


def test_passwords_reach_the_server_only_as_scram_verifiers(native_stack: NativeStack) -> None:
    settings = native_stack.settings
    with native_stack.postgres.admin_connect() as admin:
        (stored,) = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                                  (settings.postgres.writer_user,)).fetchone()  # type: ignore[misc]
    assert stored.startswith("SCRAM-SHA-256$4096:")
    assert settings.secrets.db_password.reveal() not in stored
    assert settings.secrets.db_password.reveal() not in native_stack.postgres.log_file.read_text(errors="replace")


def test_a_verifier_computed_here_is_one_postgres_accepts(native_stack: NativeStack) -> None:
    # The same derivation as libpq's PQencryptPasswordConn: log in with a role whose verifier we made.
    from psycopg import sql

    settings = native_stack.settings
    pg = settings.postgres
    with native_stack.postgres.admin_connect() as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS apt_verifier_probe"))
        admin.execute(sql.SQL("CREATE ROLE apt_verifier_probe LOGIN PASSWORD {}").format(
            sql.Literal(scram_verifier("s3cret-probe"))))
        admin.execute("GRANT CONNECT ON DATABASE postgres TO apt_verifier_probe")
        try:
            with psycopg.connect(host=pg.host, port=pg.port, dbname="postgres", user="apt_verifier_probe",
                                 password="s3cret-probe", connect_timeout=5) as conn:
                assert conn.execute("SELECT current_user").fetchone() == ("apt_verifier_probe",)
        finally:
            admin.execute("REVOKE CONNECT ON DATABASE postgres FROM apt_verifier_probe")
            admin.execute(sql.SQL("DROP ROLE apt_verifier_probe"))


# --- issue 28: what a Grafana viewer (the reader) could still do, and what the migrator does about it ---


@pytest.fixture(scope="module")
def shared_db(native_stack: NativeStack) -> Iterator[Settings]:
    """One hardened database for the tests below that change nothing in it (a fresh one costs seconds)."""
    settings = create_database(native_stack)
    yield settings
    drop_databases(native_stack, [settings.postgres.database])


def test_the_reader_may_not_take_shared_locks_large_objects_notify_or_read_files(shared_db: Settings) -> None:
    for statement in (
        # a shared lock on the migration key made the owner's exclusive one wait (issue 28)
        "SELECT pg_try_advisory_lock_shared(1634760805)", "SELECT pg_try_advisory_xact_lock_shared(1634760805)",
        "SELECT pg_advisory_lock_shared(1634760805)", "SELECT pg_advisory_unlock_all()",
        "SELECT lo_create(0)", "SELECT lo_from_bytea(0, 'x')", "SELECT pg_notify('apt', 'x')",
        "SELECT pg_read_file('PG_VERSION')", "SELECT pg_sleep_for('1 second')",
    ):
        with connect(shared_db, role="reader") as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def _has_execute(conn: psycopg.Connection, role: str, fn: str) -> bool:
    (ok,) = conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, fn)).fetchone()  # type: ignore[misc]
    return bool(ok)


def test_no_restricted_function_is_executable_but_the_few_owner_and_writer_get_back(
        native_stack: NativeStack, shared_db: Settings) -> None:
    pg = shared_db.postgres
    with native_stack.postgres.admin_connect(dbname=pg.database) as admin:
        functions = restricted_functions(admin)
        assert len(functions) > 40  # every overload: advisory locks, sleeps, large objects, notify, file readers
        for fn in functions:
            assert not _has_execute(admin, pg.reader_user, fn), fn
            assert _has_execute(admin, pg.writer_user, fn) == (fn in WRITER_FUNCTIONS), fn
            assert _has_execute(admin, pg.owner_user, fn) == (fn in OWNER_FUNCTIONS), fn
    with native_stack.postgres.admin_connect(dbname="template1") as admin:
        # so a database created from template1 (a test's, a benchmark's) starts with them closed
        for fn in restricted_functions(admin):
            assert not _has_execute(admin, pg.reader_user, fn), fn


def test_the_writer_may_not_sleep_or_take_shared_or_session_advisory_locks(shared_db: Settings) -> None:
    for statement in ("SELECT pg_sleep(0)", "SELECT pg_try_advisory_lock_shared(1634760805)",
                      "SELECT pg_advisory_lock(1634760805)", "SELECT lo_create(0)"):
        with connect(shared_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_reader_has_a_connection_limit_that_leaves_the_writer_room(native_stack: NativeStack,
                                                                       shared_db: Settings) -> None:
    pg = shared_db.postgres
    with native_stack.postgres.admin_connect() as admin:
        (open_now,) = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",  # type: ignore[misc]
                                    (pg.reader_user,)).fetchone()
    held: list[psycopg.Connection] = []
    try:
        for _ in range(pg.reader_connection_limit - open_now):
            held.append(connect(shared_db, role="reader"))
        with pytest.raises(ServiceError, match="too many connections for role"):
            held.append(connect(shared_db, role="reader"))
        with connect(shared_db) as writer, connect(shared_db, role="owner") as owner:
            assert writer.execute("SELECT 1").fetchone() == (1,)
            assert owner.execute("SELECT 1").fetchone() == (1,)
    finally:
        for conn in held:
            conn.close()
    assert pg.reader_connection_limit + pg.writer_connection_limit + OWNER_RESERVE + SUPERUSER_RESERVED <= \
        MAX_CONNECTIONS


def test_the_reader_may_not_raise_its_own_connection_limit(shared_db: Settings) -> None:
    with connect(shared_db, role="reader", autocommit=True) as conn, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT -1").format(
            sql.Identifier(shared_db.postgres.reader_user)))


def test_an_idle_open_transaction_of_the_reader_is_ended(native_stack: NativeStack, fresh_db: Settings) -> None:
    pg = fresh_db.postgres
    with connect(fresh_db, role="reader") as conn:
        (shown,) = conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()  # type: ignore[misc]
    assert shown == f"{pg.reader_idle_in_transaction_timeout_s}s"
    # the same setting, shortened for this database so the test does not wait 30 s
    quick = dataclasses.replace(roles(fresh_db), reader_idle_in_transaction_timeout_s=1)
    with native_stack.postgres.admin_connect(dbname=pg.database) as admin:
        harden_database(admin, pg.database, quick)
    conn = connect(fresh_db, role="reader")
    try:
        conn.execute("SELECT count(*) FROM households")  # holds ACCESS SHARE on households until it ends
        time.sleep(1.6)
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout):
            conn.execute("SELECT 1")
    finally:
        conn.close()


def test_what_the_reader_sets_on_its_own_role_is_dropped_at_the_next_stack_up(native_stack: NativeStack,
                                                                              fresh_db: Settings) -> None:
    # PostgreSQL lets any role ALTER ROLE itself [IN DATABASE …] SET a user-settable parameter; what
    # holds is that `stack up`/`stack init` (provision) re-imposes the reader's limits and drops its own.
    pg = fresh_db.postgres
    reader = sql.Identifier(pg.reader_user)
    try:
        with connect(fresh_db, role="reader", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = 0").format(
                reader, sql.Identifier(pg.database)))
            conn.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = 0").format(reader))
            conn.execute(sql.SQL("ALTER ROLE {} SET work_mem = '1GB'").format(reader))
        with native_stack.postgres.admin_connect(dbname=pg.database) as admin:
            harden_database(admin, pg.database, roles(fresh_db))
    finally:
        with native_stack.postgres.admin_connect() as admin:
            limit_roles(admin, roles(fresh_db), max_connections=MAX_CONNECTIONS)
    with connect(fresh_db, role="reader") as conn:
        shown = [conn.execute(f"SHOW {name}").fetchone() for name in
                 ("statement_timeout", "idle_in_transaction_session_timeout", "work_mem")]
    assert shown == [(f"{pg.reader_statement_timeout_s}s",), (f"{pg.reader_idle_in_transaction_timeout_s}s",),
                     ("4MB",)]


def _held_by_admin_lock(native_stack: NativeStack, db: str) -> psycopg.Connection:
    """The superuser holding the migrators' advisory lock (no project role may take it any more)."""
    holder = native_stack.postgres.admin_connect(dbname=db)
    holder.execute("SET application_name = 'lock-holder'")
    holder.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    return holder


def test_migrations_waiting_for_the_migration_lock_stop_naming_the_session(native_stack: NativeStack,
                                                                           fresh_db: Settings) -> None:
    holder = _held_by_admin_lock(native_stack, fresh_db.postgres.database)
    pid = holder.info.backend_pid
    try:
        started = time.monotonic()
        with connect(fresh_db, role="owner") as conn, pytest.raises(ServiceError) as refused:
            migrate(conn, lock_timeout_s=1.0)
        assert time.monotonic() - started < 10
    finally:
        holder.close()
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {pid} (user postgres, application 'lock-holder'" in message
    assert "pg_terminate_backend" in message


def test_a_readers_open_transaction_stops_a_migration_with_its_pid_not_a_hang(native_stack: NativeStack,
                                                                              fresh_db: Settings,
                                                                              tmp_path: Path) -> None:
    for path in MIGRATIONS_DIR.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "9999_probe.sql").write_text("ALTER TABLE households ADD COLUMN probe int;\n")
    with connect(fresh_db, role="reader") as reader:
        reader.execute("SET application_name = 'grafana-viewer'")
        reader.execute("SELECT count(*) FROM households")  # an open transaction: ACCESS SHARE held
        with connect(fresh_db, role="owner") as conn, pytest.raises(ServiceError) as refused:
            migrate(conn, directory=tmp_path, lock_timeout_s=1.0)
        pid = reader.info.backend_pid
    message = str(refused.value)
    assert f"pid {pid} (user {fresh_db.postgres.reader_user}, application 'grafana-viewer'" in message
    with connect(fresh_db, role="owner") as conn:  # nothing half-applied: the probe column is not there
        assert migrate(conn, directory=tmp_path, lock_timeout_s=5.0) == [9999]
