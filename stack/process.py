"""Start, find and stop the stack's background processes through pid files under the run directory.

``down`` must stop only what ``up`` started: a pid file alone is not proof (pids are reused), so a pid
counts as ours only while its command line still names our run directory.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from apt_energy.core.errors import ServiceError
from apt_energy.stack.private import SERVER_UMASK

logger = logging.getLogger(__name__)


def require_binary(name: str, *, package: str, candidates: Sequence[str] = ()) -> str:
    """Return the path of ``name`` or fail with the exact install command."""
    for candidate in (*candidates, name):
        found = shutil.which(candidate) if "/" not in candidate else (candidate if os.access(
            candidate, os.X_OK) else None)
        if found:
            return found
    raise ServiceError(f"{name} not found: install it with `sudo apt-get install -y {package}` "
                     "(or run `make bootstrap`)")


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def is_ours(pid: int | None, marker: str) -> bool:
    """True while ``pid`` is alive and its command line mentions ``marker`` (our run directory)."""
    if pid is None:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return marker in cmdline


def spawn(argv: Sequence[str], *, pid_file: Path, log_file: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start ``argv`` detached in its own session, stdout/stderr appended to ``log_file``, under umask
    077: what a server writes (Kafka's segments and metadata log, a broker's database) is its own."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by the stack, never from user input
            list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=cwd, umask=SERVER_UMASK,
        )
    pid_file.write_text(f"{proc.pid}\n")
    logger.debug("spawned pid=%d argv=%s", proc.pid, argv[0])
    return proc.pid


def terminate(pid: int, *, timeout: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL: services get the chance to flush before they are forced."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.1)
    logger.warning("pid=%d ignored SIGTERM for %.0fs; killing", pid, timeout)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        # A zombie child of ours still answers kill(0); reap it if it is our child.
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, log_file: Path | None = None,
               alive: Callable[[], bool] | None = None) -> None:
    """Poll ``check`` until it is true; fail naming ``what`` and the log to read."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            break
        time.sleep(0.25)
    hint = f"; see {log_file}" if log_file else ""
    tail = ""
    if log_file and log_file.exists():
        lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            tail = f" (last log line: {lines[-1][:200]})"
    raise ServiceError(f"{what} did not become healthy within {timeout:.0f}s{hint}{tail}")
