"""Apply ``migrations/NNNN_name.sql`` in order, once each, recording them in ``schema_migrations``.

Safe to re-run and to run concurrently (an advisory lock serialises migrators). An applied file whose
text changed is refused: fix forward with a new migration.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from apt_energy.database.roles import Roles, grant_tables

from apt_energy.errors import ServiceError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x61707465  # "apte": any constant shared by all migrators
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise ServiceError(f"{path}: migration files are named NNNN_name.sql")
        out.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in out]
    if len(versions) != len(set(versions)):
        raise ServiceError(f"{directory}: two migrations share a version number")
    return out


def applied_versions(conn: psycopg.Connection) -> dict[int, str]:
    rows = conn.execute("SELECT version, checksum FROM schema_migrations ORDER BY version").fetchall()
    return {int(v): str(c) for v, c in rows}


def migrate(conn: psycopg.Connection, *, roles: Roles | None = None,
            directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations as the owner role; return the versions applied now (empty when up to date).

    With ``roles``, the writer's and reader's table privileges are (re)granted afterwards."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                            version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,
                            applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
        done = applied_versions(conn)
        for migration in discover(directory):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise ServiceError(f"migration {migration.version:04d}_{migration.name}.sql changed after it was "
                                        "applied; revert it and add a new migration instead")
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql.encode())  # a trusted file from the repo, not user input
                    conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                                 (migration.version, migration.name, migration.checksum))
            except psycopg.Error as exc:
                raise ServiceError(f"migration {migration.version:04d}_{migration.name}.sql failed: "
                                    f"{str(exc).strip().splitlines()[0]}") from exc
            logger.info("applied migration version=%04d name=%s", migration.version, migration.name)
            applied_now.append(migration.version)
        if roles is not None:
            grant_tables(conn, roles)
    return applied_now

