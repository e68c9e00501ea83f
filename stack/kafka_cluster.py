"""A Kafka KRaft cluster of ``stack.kafka_brokers`` combined broker + controller nodes on this machine.

Every node runs from the same jars as the single broker (:class:`apt_energy.stack.kafka.Kafka`), with the
same SASL/SCRAM users, ACLs and SASL/PLAIN controller listener; node ``i`` listens on the bootstrap port
+ 2·(i-1) and the controller port + 2·(i-1), its data under ``<run dir>/kafka-cluster/node-<i>``. All
nodes are formatted with one cluster id (kept beside them), the quorum is static
(``controller.quorum.voters``), and the pipeline's topics get 3 replicas with ``min.insync.replicas=2``:
one node may die without stopping a producer with ``acks=all`` or losing what it acknowledged.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.core.errors import ServiceError
from apt_energy.stack.kafka import Kafka, KafkaOptions, ensure_principals, ensure_topics, new_cluster_id, prune_acls
from apt_energy.stack.private import private_dir
from apt_energy.stack.process import alive, is_ours, read_pid, terminate
from apt_energy.stack.service import ServiceStatus

logger = logging.getLogger(__name__)

__all__ = ["KafkaCluster", "cluster_ports", "running_brokers"]

STOP_TIMEOUT_S = 20.0


def cluster_ports(bootstrap_port: int, controller_port: int, brokers: int) -> list[tuple[int, int]]:
    """(client port, controller port) of each node; fails unless all of them are distinct."""
    ports = [(bootstrap_port + 2 * i, controller_port + 2 * i) for i in range(brokers)]
    flat = [p for pair in ports for p in pair]
    if len(set(flat)) != len(flat) or max(flat) > 65535:
        raise ServiceError(f"kafka ports collide for {brokers} brokers (node i uses the bootstrap port + 2·i and the "
                           f"controller port + 2·i): {flat}; set APT_ENERGY_STACK_KAFKA_CONTROLLER_PORT to the "
                           "bootstrap port + 1", service="kafka")
    return ports


class KafkaCluster:
    """The nodes, started together (a node is healthy only once a majority of the quorum runs)."""

    name = "kafka"

    def __init__(self, options: KafkaOptions) -> None:
        self.options = options
        self.cluster = options.cluster
        self.dir = options.run_dir / "kafka-cluster"
        self.nodes = [Kafka(options, node=i) for i in range(1, options.cluster.brokers + 1)]

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaCluster:
        return cls(KafkaOptions.from_settings(settings))

    @property
    def log_file(self) -> Path:
        return self.nodes[0].log_file

    def cluster_id(self) -> str:
        """The id every node is formatted with, made once and kept (a node whose data is gone rejoins)."""
        path = self.dir / "cluster.id"
        if not path.exists():
            private_dir(self.dir)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def up(self) -> None:
        host, port = self.nodes[0].host_port
        cluster_ports(port, self.options.controller_port, len(self.nodes))
        cluster_id = self.cluster_id()
        (self.dir / "brokers").write_text(f"{len(self.nodes)}\n")
        pids = []
        for node in self.nodes:
            node.cluster_id = cluster_id
            pids.append(node.start())
        for node, pid in zip(self.nodes, pids, strict=True):
            node.wait_healthy(pid)
        ensure_principals(self.cluster)
        self.create_topics()
        prune_acls(self.cluster)
        logger.info("kafka cluster up brokers=%d host=%s ports=%s", len(self.nodes), host,
                    ",".join(str(n.host_port[1]) for n in self.nodes))

    def create_topics(self, names: dict[str, dict[str, str]] | None = None, partitions: int | None = None) -> None:
        ensure_topics(self.cluster, names, partitions)

    def down(self) -> None:
        """SIGTERM every node at once, then wait for each; SIGKILL after ``STOP_TIMEOUT_S``: the last
        node's controlled shutdown waits for a controller quorum that is already gone (its logs are
        recovered on the next start)."""
        running = []
        for node in self.nodes:
            pid = read_pid(node.pid_file)
            if is_ours(pid, str(node.dir)) and pid is not None:
                os.kill(pid, signal.SIGTERM)
                running.append(pid)
        for pid in running:
            terminate(pid, timeout=STOP_TIMEOUT_S)
        for node in self.nodes:
            node.pid_file.unlink(missing_ok=True)
        (self.dir / "brokers").unlink(missing_ok=True)

    def node_statuses(self) -> list[ServiceStatus]:
        """One row per node."""
        return [node.status() for node in self.nodes]

    def status(self) -> ServiceStatus:
        """The cluster as one service: healthy while every node is."""
        rows = self.node_statuses()
        pids = [r.pid for r in rows if r.pid]
        detail = f"{sum(r.healthy for r in rows)}/{len(rows)} healthy"
        return ServiceStatus(self.name, any(r.running for r in rows), all(r.healthy for r in rows),
                             self.cluster.kafka.bootstrap, detail=detail, pid=pids[0] if pids else None)


def running_brokers(run_dir: Path) -> int | None:
    """How many brokers the Kafka running from ``run_dir`` has (1: the single broker), None if none runs:
    ``stack status`` and ``down`` follow what runs, not what the configuration says now."""
    pid = read_pid(run_dir / "kafka" / "pid")
    if is_ours(pid, str(run_dir / "kafka")) and pid is not None and alive(pid):
        return 1
    record = run_dir / "kafka-cluster" / "brokers"
    try:
        brokers = int(record.read_text().strip())
    except (OSError, ValueError):
        return None
    for i in range(1, brokers + 1):
        node_dir = run_dir / "kafka-cluster" / f"node-{i}"
        pid = read_pid(node_dir / "pid")
        if is_ours(pid, str(node_dir)) and pid is not None and alive(pid):
            return brokers
    return None
