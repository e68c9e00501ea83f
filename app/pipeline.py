"""``apt-energy pipeline up|status|down|run``: the long-lived services, supervised, on the native stack.

``up`` starts a supervisor daemon (``pipeline run`` in its own session, pid file and log under
``--dir``, default ``<run dir>/pipeline``) that runs the Spark job, the bridge(s) and the Slack
notifier as its children, each with a log of its own, and restarts them when they exit (see
:mod:`apt_energy.app.supervise` for the policy). ``up`` twice is harmless: the second one reports the
running supervisor. ``down`` asks the supervisor to stop (SIGTERM to every child, SIGKILL after
``--stop-timeout``) and cleans up after a supervisor that was itself killed. The stages are run as
processes (``python -m apt_energy.spark`` …), so this module depends on their command lines, and on the
bridge's public API only to remove the broker sessions of a bridge layout it no longer runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from apt_energy.alerts.slack import destination
from apt_energy.alerts.status import describe, running
from apt_energy.app.supervise import (
    LogRotation,
    RestartPolicy,
    ServiceRecord,
    ServiceSpec,
    Supervisor,
    format_table,
    read_state,
    write_state,
)
from apt_energy.bridge import Part, end_session, mqtt_options, part_client_id
from apt_energy.core.cliutil import add_env_flag, on_stop_signals
from apt_energy.core.errors import AptEnergyError, ConfigError, ServiceError
from apt_energy.database import connect
from apt_energy.stack.process import alive, is_ours, read_pid, spawn, terminate, wait_until

from apt_energy import config

logger = logging.getLogger(__name__)

__all__ = ["PipelineOptions", "check_services", "down", "is_running", "register", "service_specs", "status", "up",
           "wait_bridges_subscribed"]


@dataclass(frozen=True)
class PipelineOptions:
    """Which services to run and how to supervise them."""

    directory: Path
    bridges: int = 1
    bridge_client_id: str = "apt-bridge-1"   # with several bridges, part i of n connects as ``<id>-<i>of<n>``
    spark: bool = True
    notifier: bool = True
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_timeout_s: float = 60.0
    rotation: LogRotation = field(default_factory=LogRotation)

    @property
    def pid_file(self) -> Path:
        return self.directory / "supervisor.pid"

    @property
    def state_file(self) -> Path:
        return self.directory / "state.json"


def service_specs(options: PipelineOptions, python: str = sys.executable) -> list[ServiceSpec]:
    """The children: Spark job (without its in-process notifier), bridges, notifier; one log each.

    With several bridges, bridge ``i`` (1-based name) runs ``--part i-1/n``: each owns its share of the
    buildings, so every message is forwarded exactly once (``apt_energy.bridge.partition``)."""
    d = options.directory
    specs = []
    if options.spark:
        specs.append(ServiceSpec("spark", (python, "-m", "apt_energy.spark", "--no-notifier"), d / "spark.log"))
    for i in range(1, options.bridges + 1):
        name = "bridge" if options.bridges == 1 else f"bridge-{i}"
        argv = [python, "-m", "apt_energy.bridge", "--stats-file", str(d / f"{name}-stats.json")]
        if options.bridges > 1:
            # The bridge derives each part's own client id (and so its own MQTT session) from this base.
            argv += ["--part", f"{i - 1}/{options.bridges}", "--client-id", options.bridge_client_id]
        specs.append(ServiceSpec(name, tuple(argv), d / f"{name}.log"))
    if options.notifier:
        specs.append(ServiceSpec("notifier", (python, "-m", "apt_energy", "notifier"), d / "notifier.log"))
    return specs


def bridge_client_ids(options: PipelineOptions) -> list[str]:
    """The MQTT client ids (one persistent session each) of this layout's bridges."""
    if options.bridges < 1:
        return []
    return [part_client_id(options.bridge_client_id, Part(i, options.bridges)) for i in range(options.bridges)]


def retire_bridge_sessions(options: PipelineOptions, end_session: Callable[[str], bool]) -> list[str]:
    """Remove the broker sessions of the bridge layout this directory ran before, where it differs from
    ``options``' (``--bridges 3`` after ``--bridges 2``: parts ``-0of2``, ``-1of2`` are retired). Nobody
    resumes a retired session, yet the broker queues every reading of its buildings there until it
    expires — a backlog it rewrites at every save. Called before the new bridges start, while the old ones
    are stopped; the layout is recorded in ``<dir>/bridges.json``. Returns the client ids removed."""
    layout = options.directory / "bridges.json"
    try:
        before = [str(x) for x in json.loads(layout.read_text())["client_ids"]]
    except (OSError, ValueError, KeyError, TypeError):
        before = []
    now = bridge_client_ids(options)
    retired = [c for c in before if c not in now]
    kept = [c for c in retired if not end_session(c)]   # not removed: try again at the next `up`
    layout.parent.mkdir(parents=True, exist_ok=True)     # a first `up` in a new directory
    layout.write_text(json.dumps({"client_ids": now + kept}))
    return [c for c in retired if c not in kept]


def supervisor_argv(options: PipelineOptions) -> list[str]:
    """``pipeline run`` with the same options: what the daemon executes."""
    p = options.policy
    argv = [sys.executable, "-m", "apt_energy", "pipeline", "run", "--dir", str(options.directory),
            "--bridges", str(options.bridges), "--max-crashes", str(p.max_crashes),
            "--crash-window", f"{p.window_s:g}", "--stop-timeout", f"{options.stop_timeout_s:g}",
            "--log-max-bytes", str(options.rotation.max_bytes), "--log-keep", str(options.rotation.keep)]
    argv += [] if options.spark else ["--no-spark"]
    argv += [] if options.notifier else ["--no-notifier"]
    return argv


def is_running(directory: Path) -> int | None:
    """The pid of the supervisor serving ``directory``, if one is alive."""
    pid = read_pid(directory / "supervisor.pid")
    return pid if is_ours(pid, f"--dir {directory}") and pid is not None and alive(pid) else None


def up(options: PipelineOptions, *, timeout_s: float = 30.0, env: dict[str, str] | None = None) -> bool:
    """Start the supervisor daemon unless one already serves ``options.directory``; wait until it has
    started every service. Its children inherit ``env`` (default: this process's environment).
    Returns False if it was already running."""
    options.directory.mkdir(parents=True, exist_ok=True)
    if is_running(options.directory):
        return False
    options.state_file.unlink(missing_ok=True)
    pid = spawn(supervisor_argv(options), pid_file=options.pid_file, log_file=options.directory / "supervisor.log",
                env=env)

    def started() -> bool:
        _, records = read_state(options.state_file)
        return bool(records) and all(r.state != "starting" for r in records)

    wait_until(started, timeout=timeout_s, what="pipeline supervisor", log_file=options.directory / "supervisor.log",
               alive=lambda: alive(pid))
    return True


def wait_bridges_subscribed(options: PipelineOptions, *, timeout_s: float = 60.0) -> None:
    """Wait until every bridge has subscribed (its stats file says so): a fresh bridge session has no
    subscription yet, and what is published before it exists has no subscriber."""
    stats = [Path(s.argv[s.argv.index("--stats-file") + 1]) for s in service_specs(options)
             if s.name.startswith("bridge")]

    def subscribed() -> bool:
        check_services(options.directory)
        return all(_subscribed(f) for f in stats)

    wait_until(subscribed, timeout=timeout_s, what="bridge subscription", log_file=options.directory / "bridge.log")


def _subscribed(stats_file: Path) -> bool:
    try:
        return bool(json.loads(stats_file.read_text()).get("subscribed"))
    except (OSError, ValueError):
        return False


def check_services(directory: Path) -> None:
    """Raise if the supervisor is gone or has given up on a service (crash loop), naming the log."""
    pid, records = status(directory)
    for record in records:
        if record.state == "crash-loop":
            raise ServiceError(f"{record.name} {record.note}", service=record.name)
    if pid is None:
        raise ServiceError(f"the pipeline supervisor is not running; see {directory / 'supervisor.log'}",
                           service="pipeline")


def status(directory: Path) -> tuple[int | None, list[ServiceRecord]]:
    """The live supervisor's pid (None if not running) and the services as it last recorded them."""
    _, records = read_state(directory / "state.json")
    return is_running(directory), records


def down(directory: Path, *, timeout_s: float = 60.0) -> None:
    """SIGTERM the supervisor (it stops its children, SIGKILL after its stop timeout); if it does not
    exit, or was already dead, stop the children it left behind by their recorded pids."""
    pid = is_running(directory)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            logger.warning("supervisor pid=%d did not stop within %.0fs; killing it", pid, timeout_s + 10)
            os.kill(pid, signal.SIGKILL)
    _, records = read_state(directory / "state.json")
    orphans = [r for r in records if r.state not in ("stopped", "crash-loop")]
    for record in orphans:
        # Only a process still running this exact command line is ours: pids are reused.
        if record.pid is not None and is_ours(record.pid, " ".join(record.argv)):
            logger.warning("stopping orphaned service=%s pid=%d", record.name, record.pid)
            terminate(record.pid, timeout=timeout_s)
        record.state, record.pid = "stopped", None
    if orphans:
        write_state(directory / "state.json", None, records)
    (directory / "supervisor.pid").unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "pipeline", help="run the Spark job, bridge(s) and notifier in the background, restarted on crash",
        description="up: start a supervisor daemon and its services (idempotent); status: one row per service "
                    "(pid, state, restarts, uptime, last exit); down: SIGTERM, then SIGKILL after --stop-timeout; "
                    "run: the supervisor in the foreground. Logs: <dir>/<service>.log and supervisor.log. "
                    "The native stack must be up (apt-energy stack up).")
    p.add_argument("action", choices=["up", "status", "down", "run"])
    p.add_argument("--dir", type=Path, default=None,
                   help="pid file, state and logs (default <run dir>/pipeline; stack.run_dir, "
                        "env APT_ENERGY_STACK_RUN_DIR)")
    p.add_argument("--bridges", type=int, default=1, help="bridge instances (default 1)")
    p.add_argument("--no-spark", dest="spark", action="store_false", help="do not run the Spark job")
    p.add_argument("--no-notifier", dest="notifier", action="store_false", help="do not run the Slack notifier")
    p.add_argument("--max-crashes", type=int, default=RestartPolicy.max_crashes,
                   help="crashes within --crash-window that stop restarts (default %(default)s)")
    p.add_argument("--crash-window", type=float, default=RestartPolicy.window_s,
                   help="seconds (default %(default)s)")
    p.add_argument("--stop-timeout", type=float, default=60.0,
                   help="seconds between SIGTERM and SIGKILL (default %(default)s)")
    add_env_flag(p, "--log-max-bytes", "APT_ENERGY_PIPELINE_LOG_MAX_BYTES", default=LogRotation.max_bytes, type=int,
                 help="a service's log is rotated to <log>.1 when it grows past this size")
    add_env_flag(p, "--log-keep", "APT_ENERGY_PIPELINE_LOG_KEEP", default=LogRotation.keep, type=int,
                 help="rotated logs kept per service (<log>.1 … <log>.N)")
    p.add_argument("--json", action="store_true",
                   help="status/up/down: print the supervisor and its services as one JSON object")
    p.set_defaults(func=run)


def options_from(args: argparse.Namespace) -> PipelineOptions:
    settings = config.load()
    directory = (args.dir or settings.run_dir / "pipeline").resolve()
    policy = dataclasses.replace(RestartPolicy(), max_crashes=args.max_crashes, window_s=args.crash_window)
    try:
        rotation = LogRotation(max_bytes=args.log_max_bytes, keep=args.log_keep)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return PipelineOptions(directory=directory, bridges=args.bridges, bridge_client_id=settings.bridge.client_id,
                           spark=args.spark, notifier=args.notifier, policy=policy,
                           stop_timeout_s=args.stop_timeout, rotation=rotation)


def status_json(directory: Path) -> dict[str, object]:
    """``pipeline status --json``: what the table shows, as data (times as Unix seconds)."""
    pid, records = status(directory)
    return {"supervisor_pid": pid, "running": pid is not None, "directory": str(directory),
            "services": [{"name": r.name, "pid": r.pid if r.state in ("running", "stopping") else None,
                          "state": r.state, "restarts": r.restarts, "started_at": r.started_at,
                          "last_exit": r.last_exit, "log": r.log, "note": r.note or None} for r in records]}


def print_status(directory: Path, *, as_json: bool = False) -> bool:
    """Print the status table (or JSON); True if the supervisor and every service are running."""
    pid, records = status(directory)
    if as_json:
        print(json.dumps(status_json(directory), indent=1))
        return pid is not None and bool(records) and all(r.state == "running" for r in records)
    print(f"supervisor: {'pid ' + str(pid) if pid else 'not running (services as last recorded)'}  ({directory})")
    if records:
        print(format_table(records, time.time()))
    print_notifier_health()
    return pid is not None and bool(records) and all(r.state == "running" for r in records)


def print_notifier_health() -> None:
    """What the running notifier reports (its transport, a problem and its fix): issue 24."""
    try:
        settings = config.load()
        with connect(settings) as conn:
            lines = describe(running(conn), would=destination(settings))
    except (psycopg.Error, AptEnergyError) as exc:   # the services' table prints whatever the database says
        lines = [f"notifier: health unknown ({(str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]})"]
    for line in lines:
        print(f"alerts {line}" if line.startswith("delivery") else line)


def run(args: argparse.Namespace) -> int:
    options = options_from(args)
    if args.action == "run":
        return run_supervisor(options)
    if args.action == "up":
        if not is_running(options.directory) and options.bridges > 0:
            settings = config.load()    # the broker login is built only if a session is to be retired
            for client_id in retire_bridge_sessions(options, lambda c: end_session(mqtt_options(settings), c)):
                logger.info("retired bridge session client_id=%s (layout now %d bridge(s))", client_id,
                            options.bridges)
        if not up(options):
            # stdout carries only the JSON when it is asked for
            print("pipeline already running", file=sys.stderr if args.json else sys.stdout)
        print_status(options.directory, as_json=args.json)
        return 0
    if args.action == "down":
        down(options.directory, timeout_s=options.stop_timeout_s)
        print_status(options.directory, as_json=args.json)
        return 0
    return 0 if print_status(options.directory, as_json=args.json) else 3


def run_supervisor(options: PipelineOptions, specs: Sequence[ServiceSpec] | None = None) -> int:
    """The supervisor in this process until SIGTERM/SIGINT."""
    options.directory.mkdir(parents=True, exist_ok=True)
    other = is_running(options.directory)
    if other is not None and other != os.getpid():
        raise ServiceError(f"a pipeline supervisor (pid {other}) already serves {options.directory}",
                           service="pipeline")
    options.pid_file.write_text(f"{os.getpid()}\n")
    supervisor = Supervisor(specs or service_specs(options), state_file=options.state_file, policy=options.policy,
                            stop_timeout_s=options.stop_timeout_s, rotation=options.rotation,
                            extra_logs=[options.directory / "supervisor.log"])
    on_stop_signals(supervisor.stop)
    logger.info("supervisor pid=%d dir=%s services=%s", os.getpid(), options.directory,
                ",".join(supervisor.specs))
    try:
        supervisor.run()
    finally:
        options.pid_file.unlink(missing_ok=True)
    return 0
