"""A small process supervisor for the pipeline's long-lived services (Spark job, bridges, notifier).

The policy is pure and tested without processes: after a crash a service waits ``base_s · 2^(k-1)``
seconds (k = its crashes within ``window_s``, capped at ``cap_s``); ``max_crashes`` crashes within the
window is a crash loop, and the supervisor stops restarting that service and says so once, naming its
log. The :class:`Supervisor` owns the children (one process group, stdout/stderr appended to one log
per service) and publishes a state file that ``apt-energy pipeline status`` renders as a table.

The logs are rotated by size (:func:`rotate_log`, ``copytruncate`` style): a child holds its log open in
append mode — and keeps writing to it if the supervisor itself is killed — so the file cannot be renamed
under it; the supervisor copies it to ``<log>.1`` and truncates it, and the child's next append lands at
the start of the emptied file.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from apt_energy.core.backoff import BackoffPolicy
from apt_energy.core.logs import iso_now
from apt_energy.core.table import table

logger = logging.getLogger(__name__)

__all__ = ["LogRotation", "RestartPolicy", "ServiceRecord", "ServiceSpec", "ServiceState", "Supervisor",
           "describe_exit", "format_table", "read_state", "restart_delay", "rotate_log", "write_state"]

ServiceState = Literal["starting", "running", "backoff", "crash-loop", "stopping", "stopped"]


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a service that exited, and when to give up on it."""

    base_s: float = 1.0
    cap_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 120.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.cap_s < self.base_s or self.max_crashes < 1 or self.window_s <= 0:
            raise ValueError(f"restart policy needs 0 < base_s <= cap_s, max_crashes >= 1, window_s > 0: {self}")

    @property
    def backoff(self) -> BackoffPolicy:
        """The restart delays: the project's one backoff, plain (one process, nobody to spread out)."""
        return BackoffPolicy(base_s=self.base_s, cap_s=self.cap_s)


@dataclass(frozen=True)
class LogRotation:
    """A log over ``max_bytes`` is moved to ``<log>.1`` (older ones to ``.2`` … ``.keep``, the oldest dropped):
    a service's disk use stays below ``(keep + 1) · max_bytes`` however long it runs."""

    max_bytes: int = 20 * 1024 * 1024
    keep: int = 3

    def __post_init__(self) -> None:
        if self.max_bytes < 1024 or self.keep < 1:
            raise ValueError(f"log rotation needs max_bytes >= 1024 and keep >= 1: {self}")


def rotate_log(path: Path, rotation: LogRotation) -> bool:
    """Rotate ``path`` if it has outgrown ``rotation.max_bytes``; True if it did.

    Copy, then truncate: the writer keeps its descriptor (O_APPEND), so it needs no signal or reopen. What
    it appends between the copy and the truncate (microseconds at a log's rates) is the one thing lost."""
    try:
        if path.stat().st_size < rotation.max_bytes:
            return False
    except FileNotFoundError:
        return False
    for k in range(rotation.keep - 1, 0, -1):
        older = path.with_name(f"{path.name}.{k}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{k + 1}"))
    with open(path, "rb") as src, open(path.with_name(f"{path.name}.1"), "wb") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)
        os.truncate(path, 0)
    return True


def restart_delay(crashes: Sequence[float], now: float, policy: RestartPolicy) -> float | None:
    """Seconds to wait before the next start, or ``None`` for a crash loop (stop restarting).

    ``crashes`` are the times of the service's exits (the latest included); only those within
    ``policy.window_s`` of ``now`` count, so a service that ran quietly for a window starts over at
    ``base_s``."""
    recent = sum(1 for t in crashes if now - t <= policy.window_s)
    if recent >= policy.max_crashes:
        return None
    return policy.backoff.ceiling(max(recent - 1, 0))


def describe_exit(returncode: int) -> str:
    """``exit 1`` or ``signal 9 (SIGKILL)``, from a ``Popen.returncode``."""
    if returncode >= 0:
        return f"exit {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"
    return f"signal {-returncode} ({name})"


@dataclass(frozen=True)
class ServiceSpec:
    """One long-lived service: its name, its command line and the log its output is appended to."""

    name: str
    argv: tuple[str, ...]
    log_file: Path


@dataclass
class ServiceRecord:
    """What the supervisor knows about one service; the state file is a list of these."""

    name: str
    log: str
    argv: list[str]
    state: ServiceState = "starting"
    pid: int | None = None
    restarts: int = 0
    started_at: float | None = None       # wall clock (time.time) of the current run
    last_exit: str | None = None
    crashes: list[float] = field(default_factory=list)   # wall clock of each exit
    note: str = ""

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ServiceRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_table(records: Sequence[ServiceRecord], now: float) -> str:
    """The ``pipeline status`` table: service, pid, state, restarts, uptime, last exit (and any note)."""
    header = ("service", "pid", "state", "restarts", "uptime", "last exit")
    rows = [header]
    for r in records:
        up = _uptime(now - r.started_at) if r.state == "running" and r.started_at else "-"
        rows.append((r.name, str(r.pid) if r.pid and r.state in ("running", "stopping") else "-", r.state,
                     str(r.restarts), up, r.last_exit or "-"))
    lines = table(rows[1:], headers=header)
    lines += [f"{r.name}: {r.note}" for r in records if r.note]
    return "\n".join(lines)


def write_state(path: Path, supervisor_pid: int | None, records: Sequence[ServiceRecord]) -> None:
    """Atomically: ``pipeline status`` never reads half a file."""
    data = {"supervisor_pid": supervisor_pid, "services": [asdict(r) for r in records]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def read_state(path: Path) -> tuple[int | None, list[ServiceRecord]]:
    """The supervisor's pid and its services, from the state file it keeps (``(None, [])`` if absent)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None, []
    return data.get("supervisor_pid"), [ServiceRecord.from_json(s) for s in data.get("services", [])]


class Supervisor:
    """Runs ``specs`` as children, restarts them per ``policy``, stops them on :meth:`stop`.

    Children share the supervisor's process group, so if the supervisor itself is killed, ``pipeline
    down`` can still find them by the pids and command lines in the state file."""

    def __init__(self, specs: Sequence[ServiceSpec], *, state_file: Path, policy: RestartPolicy,
                 stop_timeout_s: float = 60.0, env: dict[str, str] | None = None,
                 rotation: LogRotation | None = None, extra_logs: Sequence[Path] = ()) -> None:
        self.specs = {s.name: s for s in specs}
        self.rotation = rotation or LogRotation()
        # The children's logs and any other log the supervisor answers for (its own supervisor.log).
        self.logs = [*(s.log_file for s in specs), *extra_logs]
        self.state_file = state_file
        self.policy = policy
        self.stop_timeout_s = stop_timeout_s
        self.env = env
        self.records = {s.name: ServiceRecord(s.name, str(s.log_file), list(s.argv)) for s in specs}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.due: dict[str, float] = {}          # service → monotonic time of its next start
        self.stop_event = threading.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to stop the children and return (signal handlers call this)."""
        self.stop_event.set()

    def run(self) -> None:
        """Start every service, supervise until stopped, then stop the children."""
        for name in self.specs:
            self._start(name)
        self._write()
        last_write = time.monotonic()
        try:
            while not self.stop_event.is_set():
                changed = self._reap()
                now = time.monotonic()
                for name, when in list(self.due.items()):
                    if now >= when:
                        del self.due[name]
                        self.records[name].restarts += 1
                        self._start(name)
                        changed = True
                if changed or now - last_write >= 5.0:
                    self._write()
                    self._rotate_logs()
                    last_write = now
                self.stop_event.wait(0.2)
        finally:
            self._stop_children()

    def _start(self, name: str) -> None:
        spec, record = self.specs[name], self.records[name]
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_file, "ab") as log:
            log.write(f"--- {iso_now()} supervisor: starting {name} "
                      f"(restart {record.restarts})\n".encode())
            log.flush()
            proc = subprocess.Popen(  # noqa: S603 - argv is built by the pipeline, never from input
                list(spec.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        self.procs[name] = proc
        record.pid, record.state, record.started_at = proc.pid, "running", time.time()
        logger.info("started service=%s pid=%d restarts=%d", name, proc.pid, record.restarts)

    def _reap(self) -> bool:
        changed = False
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            changed = True
            del self.procs[name]
            record = self.records[name]
            now_wall, now = time.time(), time.monotonic()
            record.last_exit, record.pid = describe_exit(code), None
            record.crashes = [t for t in (*record.crashes, now_wall) if now_wall - t <= self.policy.window_s]
            delay = restart_delay(record.crashes, now_wall, self.policy)
            if delay is None:
                record.state = "crash-loop"
                record.note = (f"crashed {len(record.crashes)} times within {self.policy.window_s:g}s "
                               f"(last: {record.last_exit}); not restarting it; see {record.log}")
                logger.error("%s %s", name, record.note)
                continue
            record.state = "backoff"
            self.due[name] = now + delay
            logger.warning("service=%s exited (%s); restarting in %.1fs", name, record.last_exit, delay)
        return changed

    def _stop_children(self) -> None:
        self.due.clear()
        for name, proc in self.procs.items():
            self.records[name].state = "stopping"
            if proc.poll() is None:
                proc.terminate()
        self._write()
        deadline = time.monotonic() + self.stop_timeout_s
        for name, proc in self.procs.items():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.warning("service=%s ignored SIGTERM for %.0fs; killing", name, self.stop_timeout_s)
                proc.kill()
                proc.wait()
            self.records[name].last_exit = describe_exit(proc.returncode)
        for record in self.records.values():
            if record.state != "crash-loop":
                record.state = "stopped"
            record.pid = None
        self.procs.clear()
        self._write()

    def _rotate_logs(self) -> None:
        for path in self.logs:
            try:
                if rotate_log(path, self.rotation):
                    logger.info("rotated log=%s max_bytes=%d keep=%d", path, self.rotation.max_bytes,
                                self.rotation.keep)
            except OSError as exc:   # a full disk must not stop the supervision
                logger.warning("log rotation failed log=%s error=%s", path, exc)

    def _write(self) -> None:
        write_state(self.state_file, os.getpid(), list(self.records.values()))
