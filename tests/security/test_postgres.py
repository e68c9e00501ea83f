"""Attempts on PostgreSQL with the pipeline's own credentials: each must be refused (real server)."""

from __future__ import annotations

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.database import connect
from apt_energy.database.roles import scram_verifier
from apt_energy.stack import NativeStack

from apt_energy.errors import ServiceError

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


@pytest.mark.parametrize("role", ["owner", "writer", "reader"])
def test_no_project_role_may_connect_to_the_maintenance_database(native_stack: NativeStack, role: str) -> None:
    with pytest.raises(ServiceError, match="permission denied for database"):
        connect(native_stack.settings, role=role, dbname="postgres")  # type: ignore[arg-type]


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
