"""Apply ``migrations/NNNN_name.sql`` in order, once each, recording them in ``schema_migrations``.

Safe to re-run and to run concurrently (an advisory lock serialises migrators). An applied file whose
text changed is refused: fix forward with a new migration.

Every lock a migration waits for (the migrators' advisory lock, a table's lock) waits at most
``lock_timeout_s``: a session holding one (a dashboard's open transaction, a stray psql) makes `stack up`
fail with one line naming that session instead of hanging.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg.sql
from apt_energy.core.errors import ServiceError
from apt_energy.database.roles import Roles, grant_tables

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 0x61707465  # "apte": any constant shared by all migrators
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LOCK_TIMEOUT_S = 10.0


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


@dataclass(frozen=True)
class Blocker:
    """A session a migration waited for (``pg_blocking_pids`` + ``pg_stat_activity``; the owner sees
    another role's state and start time only as NULL)."""

    pid: int
    user: str | None
    application: str | None
    client: str | None
    state: str | None

    def describe(self) -> str:
        parts = [f"user {self.user or '?'}"]
        if self.application:
            parts.append(f"application {self.application!r}")
        if self.client:
            parts.append(f"from {self.client}")
        if self.state:
            parts.append(self.state)
        return f"pid {self.pid} ({', '.join(parts)})"


class _BlockerWatch:
    """Records who blocks ``pid``, from a second connection, once a migration has waited half its lock
    timeout (a quick migration never opens it): after the timeout the waiting is over and
    ``pg_blocking_pids`` no longer names anyone."""

    def __init__(self, conn: psycopg.Connection, *, after_s: float) -> None:
        self.pid = conn.info.backend_pid
        self._conninfo = psycopg.conninfo.make_conninfo(**{
            o.keyword.decode(): o.val.decode() for o in conn.pgconn.info if o.val is not None})
        self.blockers: list[Blocker] = []
        self._stop = threading.Event()
        self._thread = threading.Timer(after_s, self._watch)
        self._thread.daemon = True

    def __enter__(self) -> _BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        try:
            with psycopg.connect(self._conninfo, autocommit=True, application_name="apt-energy migrate watch") as c:
                while not self._stop.is_set():
                    rows = c.execute("""SELECT a.pid, a.usename, a.application_name, host(a.client_addr), a.state
                                        FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s))
                                        ORDER BY a.pid""", (self.pid,)).fetchall()
                    if rows:
                        self.blockers = [Blocker(*r) for r in rows]
                    self._stop.wait(0.2)
        except psycopg.Error as exc:  # the message then names no session, the timeout still stands
            logger.warning("could not watch for blocking sessions error=%s", exc)


def lock_timeout_error(what: str, timeout_s: float, blockers: list[Blocker]) -> ServiceError:
    """One line: what waited, for whom, and what to do."""
    who = "; ".join(b.describe() for b in blockers) or "a session that ended meanwhile"
    pids = ", ".join(str(b.pid) for b in blockers) or "<pid>"
    return ServiceError(f"{what} waited {timeout_s:g}s for a lock held by {who}: end that session (close it, or "
                        f"SELECT pg_terminate_backend({pids}) as the superuser) and run again", service="postgresql")


def migrate(conn: psycopg.Connection, *, roles: Roles | None = None,
            directory: Path = MIGRATIONS_DIR, lock_timeout_s: float = LOCK_TIMEOUT_S) -> list[int]:
    """Apply pending migrations as the owner role; return the versions applied now (empty when up to date).

    With ``roles``, the writer's and reader's table privileges are (re)granted afterwards. A lock not
    granted within ``lock_timeout_s`` raises :class:`ServiceError` naming the session that holds it."""
    with _BlockerWatch(conn, after_s=lock_timeout_s / 2) as watch:
        try:
            return _migrate(conn, roles=roles, directory=directory, lock_timeout_s=lock_timeout_s)
        except psycopg.errors.LockNotAvailable as exc:
            raise lock_timeout_error("migrations", lock_timeout_s, watch.blockers) from exc


def _migrate(conn: psycopg.Connection, *, roles: Roles | None, directory: Path, lock_timeout_s: float) -> list[int]:
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute(psycopg.sql.SQL("SET LOCAL lock_timeout = {}").format(
            psycopg.sql.Literal(f"{int(lock_timeout_s * 1000)}ms")))
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
            except psycopg.errors.LockNotAvailable:
                raise
            except psycopg.Error as exc:
                raise ServiceError(f"migration {migration.version:04d}_{migration.name}.sql failed: "
                                    f"{str(exc).strip().splitlines()[0]}") from exc
            logger.info("applied migration version=%04d name=%s", migration.version, migration.name)
            applied_now.append(migration.version)
        if roles is not None:
            grant_tables(conn, roles)
    return applied_now

