"""The project's own PostgreSQL cluster (initdb + pg_ctl from the Debian package), not the system one.

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user the package
creates. Unix sockets are off: everything talks TCP on 127.0.0.1 and the configured port.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from apt_energy.config import Secret, Settings
from apt_energy.config.settings import PostgresSettings
from apt_energy.core.errors import ServiceError
from apt_energy.database.connection import postgres_roles
from apt_energy.database.roles import close_maintenance_databases, ensure_role, harden_database, limit_roles
from apt_energy.stack.private import SERVER_UMASK, narrow_tree, private_dir
from apt_energy.stack.process import port_open, read_pid, require_binary, wait_until
from apt_energy.stack.secrets import ADMIN_USER, admin_password
from apt_energy.stack.service import ServiceStatus

logger = logging.getLogger(__name__)

MAX_CONNECTIONS = 200  # the roles' connection limits are checked against it (database/roles.py)


def pg_bindir() -> Path:
    """The newest installed server's bin directory (Debian keeps each major version apart)."""
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(Path(d).parent.name))
    for d in reversed(dirs):
        if (Path(d) / "initdb").exists():
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ServiceError("PostgreSQL server not found: install it with `sudo apt-get install -y postgresql` "
                     "(or run `make bootstrap`)")


class Postgres:
    """The cluster under ``<run dir>/postgres``, listening on ``postgres.host:port``. It holds no password:
    the superuser's is read from the stack's secrets when it connects."""

    name = "postgresql"

    def __init__(self, postgres: PostgresSettings, *, run_dir: Path) -> None:
        self.postgres = postgres
        self.dir = run_dir / "postgres"
        self.home = _home(self.dir)
        self.data = self.home / "data"

    @classmethod
    def from_settings(cls, settings: Settings) -> Postgres:
        return cls(settings.postgres, run_dir=settings.run_dir)

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return [require_binary("runuser", package="util-linux"), "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self._as_owner(argv), capture_output=True, text=True, check=False,  # noqa: S603
                              umask=SERVER_UMASK)

    def up(self) -> None:
        pg = self.postgres
        bindir = pg_bindir()
        # The cluster's home is the postgres user's alone (its log names roles, databases and queries).
        private_dir(self.home, owner="postgres")
        if self.home != self.dir:
            private_dir(self.dir, traversable=True)  # holds only the link to the private home
        narrow_tree(self.home)  # e.g. a log an older apt-energy left 0644
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bindir)
        if self._server_pid() is None:
            if port_open(pg.host, pg.port):
                raise ServiceError(f"port {pg.port} is in use by another process; set APT_ENERGY_POSTGRES_PORT "
                                 "to a free port")
            self._chown(self.log_file, touch=True)
            opts = (f"-c port={pg.port} -c listen_addresses={pg.host} -c unix_socket_directories='' "
                    f"-c fsync=on -c synchronous_commit=on -c max_connections={MAX_CONNECTIONS} "
                    "-c shared_buffers=256MB -c wal_level=minimal -c max_wal_senders=0")
            result = self._run([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                                "-o", opts, "-w", "-t", "60", "start"])
            if result.returncode != 0:
                raise ServiceError(f"pg_ctl start failed: {(result.stderr or result.stdout).strip()[:300]}; "
                                 f"see {self.log_file}")
        wait_until(self._accepts, timeout=30, what="postgresql", log_file=self.log_file)
        logger.info("postgresql up port=%d data=%s", pg.port, self.data)

    def _initdb(self, bindir: Path) -> None:
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self._chown(self.data.parent)
        pwfile = self.data.parent / "admin.pw"
        pwfile.write_text(admin_password().reveal() + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        result = self._run([str(bindir / "initdb"), "-D", str(self.data), "-U", ADMIN_USER,
                            "--auth-host=scram-sha-256", "--auth-local=reject", f"--pwfile={pwfile}",
                            "-E", "UTF8", "--locale=C.UTF-8"])
        pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {(result.stderr or result.stdout).strip()[-300:]}")

    def _chown(self, path: Path, *, touch: bool = False) -> None:
        if touch:
            path.touch(exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _server_pid(self) -> int | None:
        pid = read_pid(self.data / "postmaster.pid")
        if pid is None:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def _accepts(self) -> bool:
        try:
            with self.admin_connect(dbname="postgres", connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def admin_connect(self, *, dbname: str | None = None, connect_timeout: int = 10) -> psycopg.Connection:
        return admin_connect(self.postgres, dbname=dbname, connect_timeout=connect_timeout)

    def down(self) -> None:
        if self._server_pid() is None:
            return
        result = self._run([str(pg_bindir() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if result.returncode != 0:
            raise ServiceError(f"pg_ctl stop failed: {(result.stderr or result.stdout).strip()[:300]}")

    def status(self) -> ServiceStatus:
        pid = self._server_pid()
        pg = self.postgres
        endpoint = f"postgresql://{pg.host}:{pg.port}/{pg.database}"
        return ServiceStatus(self.name, pid is not None, pid is not None and self._accepts(), endpoint, pid=pid)


# Root's home folders are private (0700), so the postgres user cannot reach a run directory under one.
# The cluster then lives under this root-owned, not world-writable folder — never under /tmp or
# /var/tmp, where another local user could create the path first or plant a symlink.
PRIVATE_BASE = Path("/var/lib/apt-energy")


def _home(pg_dir: Path) -> Path:
    """Where the cluster's data and log live: ``<run>/postgres``, unless the ``postgres`` user cannot
    reach the run dir (root working under a private folder); then a folder under :data:`PRIVATE_BASE`
    keyed by the run dir, linked from ``<run>/postgres/home``."""
    if os.geteuid() != 0 or _reachable_by_postgres(pg_dir.parent):
        return pg_dir
    key = hashlib.sha256(str(pg_dir.resolve()).encode()).hexdigest()[:12]
    PRIVATE_BASE.mkdir(mode=0o711, parents=True, exist_ok=True)
    PRIVATE_BASE.chmod(0o711)  # not listable; the postgres user passes through to its own home
    _check_owned(PRIVATE_BASE, uids={0})
    home = PRIVATE_BASE / f"pg-{key}"
    if home.exists() or home.is_symlink():
        _check_owned(home, uids={0, pwd.getpwnam("postgres").pw_uid})
    link = pg_dir / "home"
    pg_dir.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.readlink() != home:
        link.unlink()  # an older layout (e.g. /var/tmp): point at the private home instead
    if not link.is_symlink():
        link.symlink_to(home)
    return home


def _check_owned(path: Path, *, uids: set[int]) -> None:
    """Refuse a path that is a symlink, or owned by someone else, or writable by others."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid not in uids or st.st_mode & 0o002:
        raise ServiceError(f"{path} is not a private directory of root or postgres (a symlink, another owner, "
                           "or world-writable); remove it and run `apt-energy stack up` again",
                           service="postgresql")


def _reachable_by_postgres(path: Path) -> bool:
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        return True  # no such user yet: `require_binary` will say what to install
    for part in [path, *path.parents]:
        try:
            st = part.stat()
        except OSError:
            continue
        if st.st_uid == pw.pw_uid:
            continue
        mode = st.st_mode
        if not (mode & 0o001 or (st.st_gid == pw.pw_gid and mode & 0o010)):
            return False
    return True


def admin_connect(pg: PostgresSettings, *, dbname: str | None = None,
                  connect_timeout: int = 10) -> psycopg.Connection:
    """The superuser (``postgres``, password APT_ENERGY_DB_ADMIN_PASSWORD) at postgres.host:port."""
    return psycopg.connect(host=pg.host, port=pg.port, user=ADMIN_USER, dbname=dbname or "postgres",
                           password=admin_password().reveal(), connect_timeout=connect_timeout, autocommit=True)


@dataclass(frozen=True)
class DatabaseLogins:
    """The pipeline's database and its three roles with their passwords: what :func:`provision` creates
    (the only holder of the owner's password besides migrations)."""

    postgres: PostgresSettings
    owner_password: Secret
    writer_password: Secret
    reader_password: Secret

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseLogins:
        s = settings.secrets
        return cls(settings.postgres, s.db_owner_password, s.db_password, s.db_reader_password)



def provision(logins: DatabaseLogins) -> None:
    """Create (or update the passwords of) the owner, writer and reader roles and the pipeline's database,
    then harden it (:mod:`apt_energy.database.roles`)."""
    from psycopg import sql

    cfg = logins.postgres
    roles = postgres_roles(cfg)
    users = ((cfg.owner_user, logins.owner_password, "APT_ENERGY_DB_OWNER_PASSWORD"),
             (cfg.writer_user, logins.writer_password, "APT_ENERGY_DB_PASSWORD"),
             (cfg.reader_user, logins.reader_password, "APT_ENERGY_DB_READER_PASSWORD"))
    with admin_connect(cfg) as conn:
        for role, password, env in users:
            if not password:
                raise ServiceError(f"no password for PostgreSQL role {role}: set {env} in the environment or .env",
                                   service="postgresql")
            ensure_role(conn, role, password)
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (cfg.database,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(cfg.database), sql.Identifier(cfg.owner_user)))
        limit_roles(conn, roles)  # within the server's max_connections (compose's may be lower)
    # The maintenance databases are the superuser's alone (PUBLIC may connect to both by default).
    with admin_connect(cfg, dbname="template1") as conn:
        close_maintenance_databases(conn)
    with admin_connect(cfg, dbname=cfg.database) as conn:
        harden_database(conn, cfg.database, roles)
