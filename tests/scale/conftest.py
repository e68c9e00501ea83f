"""The scale test's cluster, all of its own (own ports and run directory, so the session stack the rest of
the suite uses is untouched): ``apt-energy stack up --kafka-brokers 3`` (Mosquitto, PostgreSQL and 3 Kafka
KRaft brokers) and a Spark standalone master with 2 workers; stopped with ``apt-energy stack down``."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from apt_energy.config import Settings
from apt_energy.stack.kafka_cluster import KafkaCluster
from apt_energy.stack.service import ServiceStatus
from apt_energy.stack.spark_cluster import SparkCluster, SparkClusterOptions

from apt_energy import config

REPORT: list[str] = []   # lines for the terminal summary


# Below the kernel's ephemeral range (32768-60999 here): a port picked there by binding to 0 may be taken
# by any outgoing connection (a Kafka client's, say) before the service it was picked for binds it.
PORTS = range(20000, 32000)
_taken: set[int] = set()


def free_block(size: int) -> int:
    """A port p with p … p+size-1 all free now and not handed out before (Kafka node i: p+2i, p+2i+1)."""
    for _ in range(500):
        base = random.randrange(PORTS.start, PORTS.stop - size)
        block = set(range(base, base + size))
        if block & _taken:
            continue
        try:
            for port in block:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        _taken.update(block)
        return base
    raise RuntimeError(f"no block of {size} free ports in {PORTS}")


def free_port() -> int:
    return free_block(1)


def stack(action: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apt_energy", "stack", action, *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def status_rows(out: str) -> dict[str, str]:
    """``stack status`` output: service → ``healthy``, ``running`` (unhealthy) or ``stopped``."""
    return {line.split()[0]: line.split()[1].rstrip(",") for line in out.splitlines() if len(line.split()) > 1}


@dataclass(frozen=True)
class Cluster:
    settings: Settings            # this cluster's: own stack, 3 brokers, Spark master
    env: dict[str, str]           # the same for subprocesses (bridges, the Spark job, edge shards, executors)
    kafka: KafkaCluster
    spark: SparkCluster
    directory: Path
    stack_env: dict[str, str]     # for `apt-energy stack …` (without the broker count: status/down find it)
    statuses: dict[str, str]      # `stack status` right after `stack up --kafka-brokers 3`

    def node_statuses(self) -> list[ServiceStatus]:
        return [*self.kafka.node_statuses(), *self.spark.statuses()]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scale")
    # PostgreSQL keeps its data outside the run dir, keyed by the run dir's path (stack/postgres.py): a path
    # of its own per run, so a run never finds an earlier run's rows (the ledger would match them).
    run_dir = tmp / f"run-{uuid.uuid4().hex[:8]}"
    base = free_block(6)
    master_port, master_ui = free_port(), free_port()
    # The stack's own ports; no APT_ENERGY_STACK_KAFKA_BROKERS: `up` takes the flag, status/down find the cluster.
    stack_env = {k: v for k, v in os.environ.items() if k != "APT_ENERGY_STACK_KAFKA_BROKERS"} | {
        "APT_ENERGY_STACK_RUN_DIR": str(run_dir),
        "APT_ENERGY_MQTT_PORT": str(free_port()), "APT_ENERGY_MQTT_PLAIN_PORT": str(free_port()),
        "APT_ENERGY_POSTGRES_PORT": str(free_port()),
        "APT_ENERGY_KAFKA_BOOTSTRAP": f"127.0.0.1:{base}", "APT_ENERGY_STACK_KAFKA_CONTROLLER_PORT": str(base + 1),
        "APT_ENERGY_STACK_KAFKA_HEAP": "384m", "APT_ENERGY_LOG_LEVEL": "INFO"}
    stack_env.pop("APT_ENERGY_MQTT_TEST_PREFIX_ROOT", None)
    # Clients bootstrap from every broker; the Spark job runs on the master; the driver and the executors
    # talk over loopback.
    env = {**stack_env, "APT_ENERGY_STACK_KAFKA_BROKERS": "3",
           "APT_ENERGY_SPARK_MASTER": f"spark://127.0.0.1:{master_port}",
           "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp / "checkpoints"), "SPARK_LOCAL_IP": "127.0.0.1"}
    settings = config.load(environ=env)
    kafka = KafkaCluster.from_settings(settings)
    spark = SparkCluster(SparkClusterOptions(directory=tmp / "spark", port=master_port, webui_port=master_ui,
                                             workers=2, worker_cores=1, worker_memory="1g",
                                             worker_webui_ports=(free_port(), free_port()), env=env))
    try:
        up = stack("up", stack_env, "--kafka-brokers", "3")
        assert up.returncode == 0, up.stdout + up.stderr[-3000:]
        status = stack("status", stack_env)
        assert status.returncode == 0, status.stdout + status.stderr[-3000:]
        spark.up()
        yield Cluster(settings, env, kafka, spark, tmp, stack_env, status_rows(status.stdout))
    finally:
        spark.down()
        down = stack("down", stack_env)
        REPORT.append(f"stack down: {' '.join(down.stdout.split())}")
        home = run_dir / "postgres" / "home"
        if home.is_symlink():
            shutil.rmtree(home.resolve(), ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("scale: 3 Kafka brokers, Spark master + 2 workers, 2 bridges, 2 edge shards")
        for line in REPORT:
            terminalreporter.write_line(line)
