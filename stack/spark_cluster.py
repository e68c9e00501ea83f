"""A Spark standalone cluster on this machine: one master and N workers from the pyspark distribution.

The pyspark wheel carries Spark's jars and ``bin/spark-class``; ``spark-class
org.apache.spark.deploy.master.Master`` and ``... worker.Worker`` run the daemons without a separate Spark
download. Each worker offers its own ``--cores`` and ``--memory``, so an application submitted with
``--master spark://host:port`` gets one executor per worker. Pid files and logs live under one directory
whose path every daemon carries on its command line (``-Dapt.energy.dir=…``), so ``down`` stops only what
``up`` started. The executors inherit the workers' environment (``env``): the same settings as the job.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from apt_energy.core.errors import ServiceError
from apt_energy.stack.kafka import java_binary
from apt_energy.stack.process import alive, is_ours, port_open, read_pid, spawn, terminate, wait_until
from apt_energy.stack.service import ServiceStatus

logger = logging.getLogger(__name__)

__all__ = ["SparkCluster", "SparkClusterOptions", "alive_workers", "spark_home"]


def spark_home() -> Path:
    """The pyspark distribution: its ``jars/`` and ``bin/spark-class``."""
    import pyspark  # imported late: the rest of the stack does not need Spark

    return Path(pyspark.__file__).resolve().parent


@dataclass(frozen=True)
class SparkClusterOptions:
    """Where the cluster lives and what each worker offers."""

    directory: Path
    host: str = "127.0.0.1"
    port: int = 7077
    webui_port: int = 8080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"       # ≥ spark.executor.memory (1g by default)
    worker_webui_ports: tuple[int, ...] = ()   # one per worker; default webui_port + i
    daemon_memory: str = "512m"
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def worker_webui_port(self, i: int) -> int:
        return self.worker_webui_ports[i - 1] if self.worker_webui_ports else self.webui_port + i


def alive_workers(master_json: Mapping[str, object]) -> set[int]:
    """The web UI ports of the workers the master's ``/json/`` page lists as ALIVE."""
    ports = set()
    workers = master_json.get("workers")
    for worker in workers if isinstance(workers, list) else []:
        if isinstance(worker, dict) and worker.get("state") == "ALIVE":
            _, _, port = str(worker.get("webuiaddress", "")).rstrip("/").rpartition(":")
            if port.isdigit():
                ports.add(int(port))
    return ports


class SparkCluster:
    """``up`` (idempotent), ``down``, ``status`` of the master and each worker; ``kill_worker`` for drills."""

    name = "spark"

    def __init__(self, options: SparkClusterOptions) -> None:
        self.options = options
        self.dir = options.directory.resolve()

    @property
    def log_file(self) -> Path:
        return self.dir / "master.log"

    def _pid_file(self, role: str) -> Path:
        return self.dir / f"{role}.pid"

    def _roles(self) -> list[str]:
        return ["master", *(f"worker-{i}" for i in range(1, self.options.workers + 1))]

    def pid(self, role: str) -> int | None:
        """The running daemon's pid (``master``, ``worker-1``, …), None if it is not running."""
        pid = read_pid(self._pid_file(role))
        return pid if pid is not None and is_ours(pid, f"-Dapt.energy.dir={self.dir}") and alive(pid) else None

    def _env(self) -> dict[str, str]:
        o = self.options
        conf = self.dir / "conf"   # empty: no spark-defaults or spark-env.sh from elsewhere
        conf.mkdir(parents=True, exist_ok=True)
        env = {**o.env, "SPARK_HOME": str(spark_home()), "SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": o.host,
               "SPARK_LOG_DIR": str(self.dir), "SPARK_DAEMON_MEMORY": o.daemon_memory,
               "SPARK_DAEMON_JAVA_OPTS": f"-Dapt.energy.dir={self.dir}",
               # no REST submission server: it would take the fixed port 6066, and jobs here use spark://
               "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false"}
        java = Path(java_binary()).resolve()
        env.setdefault("JAVA_HOME", str(java.parent.parent))
        return env

    def _spawn(self, role: str, main: str, args: list[str]) -> int:
        spark_class = spark_home() / "bin" / "spark-class"
        return spawn([str(spark_class), main, *args], pid_file=self._pid_file(role), log_file=self.dir / f"{role}.log",
                     env=self._env(), cwd=self.dir)

    def start_master(self) -> int:
        o = self.options
        pid = self.pid("master")
        if pid is None:
            for port in (o.port, o.webui_port):
                if port_open(o.host, port):
                    raise ServiceError(f"port {port} is in use by another process; choose other Spark master ports",
                                       service="spark")
            pid = self._spawn("master", "org.apache.spark.deploy.master.Master",
                              ["--host", o.host, "--port", str(o.port), "--webui-port", str(o.webui_port)])
        wait_until(lambda: self._master_json() is not None, timeout=120, what="spark master",
                   log_file=self.dir / "master.log", alive=lambda: alive(pid))
        return pid

    def start_worker(self, i: int) -> int:
        """Start worker ``i`` (1-based) unless it runs, and wait until the master lists it as alive."""
        o = self.options
        role, webui = f"worker-{i}", o.worker_webui_port(i)
        pid = self.pid(role)
        if pid is None:
            work = self.dir / role
            work.mkdir(parents=True, exist_ok=True)
            pid = self._spawn(role, "org.apache.spark.deploy.worker.Worker",
                              ["--host", o.host, "--cores", str(o.worker_cores), "--memory", o.worker_memory,
                               "--webui-port", str(webui), "--work-dir", str(work), o.master_url])
        wait_until(lambda: webui in self._alive_worker_ports(), timeout=120, what=f"spark {role}",
                   log_file=self.dir / f"{role}.log", alive=lambda: alive(pid))
        return pid

    def up(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.start_master()
        for i in range(1, self.options.workers + 1):
            self.start_worker(i)
        logger.info("spark cluster up master=%s workers=%d cores=%d memory=%s", self.options.master_url,
                    self.options.workers, self.options.worker_cores, self.options.worker_memory)

    def kill(self, role: str) -> int:
        """SIGKILL one daemon (a fault drill); returns its pid."""
        pid = self.pid(role)
        if pid is None:
            raise ServiceError(f"spark {role} is not running", service="spark")
        os.kill(pid, signal.SIGKILL)
        return pid

    def down(self) -> None:
        """Workers first (their executors with them), then the master."""
        for role in reversed(self._roles()):
            pid = self.pid(role)
            if pid is not None:
                terminate(pid, timeout=30)
            self._pid_file(role).unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        rows = self.statuses()
        pid = rows[0].pid
        return ServiceStatus(self.name, any(r.running for r in rows), all(r.healthy for r in rows),
                             self.options.master_url, detail=f"{sum(r.healthy for r in rows[1:])} workers alive",
                             pid=pid)

    def statuses(self) -> list[ServiceStatus]:
        """One row for the master and one per worker."""
        o = self.options
        master_pid = self.pid("master")
        master_json = self._master_json() if master_pid else None
        rows = [ServiceStatus("spark-master", master_pid is not None, master_json is not None, o.master_url,
                              pid=master_pid)]
        workers = alive_workers(master_json) if master_json else set()
        for i in range(1, o.workers + 1):
            pid = self.pid(f"worker-{i}")
            rows.append(ServiceStatus(f"spark-worker-{i}", pid is not None,
                                      pid is not None and o.worker_webui_port(i) in workers,
                                      f"{o.worker_cores} core, {o.worker_memory}", pid=pid))
        return rows

    def _alive_worker_ports(self) -> set[int]:
        data = self._master_json()
        return alive_workers(data) if data else set()

    def _master_json(self) -> dict[str, object] | None:
        url = f"http://{self.options.host}:{self.options.webui_port}/json/"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                data = json.loads(response.read())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("status") == "ALIVE" else None
