"""The scale test's cluster: 3 Kafka KRaft brokers and a Spark standalone master with 2 workers of its own
(own ports and run directory, so the session stack's Kafka that the rest of the suite uses is untouched),
beside the session stack's Mosquitto and PostgreSQL (an isolated database and MQTT prefix)."""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from apt_energy.config import Settings
from apt_energy.stack import NativeStack
from apt_energy.stack.kafka_cluster import KafkaCluster
from apt_energy.stack.spark_cluster import SparkCluster, SparkClusterOptions

from tests.conftest import TEST_PREFIX_ROOT, create_database, drop_databases, env_for

REPORT: list[str] = []   # lines for the terminal summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_block(size: int) -> int:
    """A port p with p … p+size-1 all free (Kafka node i uses p+2i and p+2i+1)."""
    for _ in range(200):
        base = free_port()
        if base + size > 65535:
            continue
        try:
            for offset in range(size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no block of {size} free ports")


@dataclass(frozen=True)
class Cluster:
    settings: Settings            # isolated: own Kafka cluster, database, MQTT prefix, bridge client id
    env: dict[str, str]           # the same for subprocesses (bridges, the Spark job, edge shards, executors)
    kafka: KafkaCluster
    spark: SparkCluster
    directory: Path


@pytest.fixture(scope="module")
def cluster(native_stack: NativeStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("scale")
    tag = uuid.uuid4().hex[:10]
    base = free_block(6)
    db = create_database(native_stack)
    s = native_stack.settings
    settings = dataclasses.replace(
        s, postgres=db.postgres,
        mqtt=dataclasses.replace(s.mqtt, topic_prefix=f"{TEST_PREFIX_ROOT}/s{tag}",
                                 ca_file=str(s.mqtt_ca_file)),   # the session stack's CA, not the run dir's
        kafka=dataclasses.replace(s.kafka, bootstrap=f"127.0.0.1:{base}"),
        bridge=dataclasses.replace(s.bridge, client_id=f"bridge-{tag}"),
        stack=dataclasses.replace(s.stack, run_dir=str(tmp / "run"), kafka_controller_port=base + 1,
                                  kafka_brokers=3, kafka_heap="384m"))
    master_port, master_ui = free_port(), free_port()
    env = {**env_for(settings), "APT_ENERGY_LOG_LEVEL": "INFO",
           "APT_ENERGY_MQTT_CA_FILE": settings.mqtt.ca_file,
           "APT_ENERGY_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
           "APT_ENERGY_STACK_KAFKA_CONTROLLER_PORT": str(base + 1),
           "APT_ENERGY_STACK_KAFKA_BROKERS": "3",
           "APT_ENERGY_SPARK_MASTER": f"spark://127.0.0.1:{master_port}",
           "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp / "checkpoints"),
           "SPARK_LOCAL_IP": "127.0.0.1"}   # the driver too: executors reach it on loopback
    kafka = KafkaCluster(settings)
    spark = SparkCluster(SparkClusterOptions(directory=tmp / "spark", port=master_port, webui_port=master_ui,
                                             workers=2, worker_cores=1, worker_memory="1g",
                                             worker_webui_ports=(free_port(), free_port()), env=env))
    try:
        kafka.up()
        spark.up()
        yield Cluster(settings, env, kafka, spark, tmp)
    finally:
        spark.down()
        kafka.down()
        drop_databases(native_stack, [db.postgres.database])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("scale: 3 Kafka brokers, Spark master + 2 workers, 2 bridges, 2 edge shards")
        for line in REPORT:
            terminalreporter.write_line(line)
