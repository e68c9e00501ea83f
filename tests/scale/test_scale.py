"""The pipeline on more than one of everything (``make scale-test``): 3 Kafka brokers (replication factor 3,
``min.insync.replicas`` 2), the stream job on a Spark standalone master with 2 workers (1 core, 1 GB each),
2 bridges (``pipeline up --bridges 2``: parts 0/2 and 1/2), 2 edge shards; mid-run one Kafka broker (the
readings' partition-0 leader) and one Spark worker die by SIGKILL and stay dead. The database must still
equal the simulator's ledger, reading for reading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apt_energy.app import pipeline
from apt_energy.app.pipeline import PipelineOptions
from apt_energy.app.truth import Key, Total, TruthResult, check, database_totals, read_ledger
from apt_energy.core.kafka import KafkaClient
from apt_energy.stack.process import alive, read_pid

from tests.chaos.harness import Chaos
from tests.scale.conftest import REPORT, Cluster, stack, status_rows

pytestmark = [pytest.mark.scale, pytest.mark.timeout(900)]

HOUSEHOLDS = 40
MONTHS = 3
INTERVAL = "6h"
EDGE_RUN_S = 60            # real seconds the fleet takes for MONTHS, so the faults land mid-run
# No progress for this long → settled. A Kafka client that was talking to the killed broker takes a while
# to give up on it (the stream job's offset lookups: its admin client's API timeout, then a new client).
QUIET_S = 180.0
SETTLE_TIMEOUT_S = 420.0


def partition_leader(cluster: Cluster, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    md = AdminClient(KafkaClient.from_settings(cluster.settings, "admin").config()).list_topics(topic, timeout=10)
    return int(md.topics[topic].partitions[0].leader)


def edge_shard(cluster: Cluster, shard: int, shards: int) -> tuple[subprocess.Popen[bytes], Path]:
    d = cluster.directory
    ledger = d / f"ledger-{shard}.json"
    speed = MONTHS * 30.4 * 86400 / EDGE_RUN_S
    log = open(d / f"edge-{shard}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apt_energy", "edge", "--households", str(HOUSEHOLDS), "--shard", f"{shard}/{shards}",
         "--start", "2024-01-01", "--months", str(MONTHS), "--interval", INTERVAL, "--speed", f"{speed:.0f}",
         "--ledger", str(ledger), "--state", str(d / f"edge-state-{shard}.json")],
        env=cluster.env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, ledger


def settle(cluster: Cluster, ledger: dict[Key, Total], options: PipelineOptions) -> TruthResult:
    """Until the database equals the ledger, or nothing moved for QUIET_S (a lost reading never comes)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, last_change = -1, time.monotonic()
    while True:
        truth = check(cluster.settings, ledger, only_ledger_devices=True)
        if truth.ok:
            return truth
        pipeline.check_services(options.directory)
        now = time.monotonic()
        if truth.stored != last:
            last, last_change = truth.stored, now
        if now - last_change > QUIET_S or now > deadline:
            return truth
        time.sleep(2.0)


def test_database_equals_ledger_after_a_kafka_broker_and_a_spark_worker_are_killed_mid_run(
        cluster: Cluster) -> None:
    began = time.monotonic()
    settings = cluster.settings
    options = PipelineOptions(directory=cluster.directory / "pipeline", bridges=2,
                              bridge_client_id=settings.bridge.client_id, notifier=False, stop_timeout_s=30)
    *_, canary = settings.complex.households()
    edges: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        pipeline.up(options, env=cluster.env)
        pipeline.wait_bridges_subscribed(options, timeout_s=120)
        Chaos(settings, cluster.env, options.directory, list).wait_ready(canary)   # Spark job on the cluster
        ready = time.monotonic()

        edges = [edge_shard(cluster, i, 2) for i in range(2)]
        fleet_devices = [h.device_id for h in settings.complex.households()[:HOUSEHOLDS]]
        deadline = time.monotonic() + 120
        while not database_totals(settings, fleet_devices):   # the stream job is writing the fleet's readings
            assert time.monotonic() < deadline, f"no fleet reading stored; see {options.directory}/*.log"
            assert all(p.poll() in (None, 0) for p, _ in edges), "an edge shard failed"
            time.sleep(1.0)
        broker = partition_leader(cluster, settings.kafka.readings_topic)
        node = cluster.kafka.nodes[broker - 1]
        broker_pid = read_pid(node.pid_file)
        assert broker_pid is not None and alive(broker_pid)
        os.kill(broker_pid, signal.SIGKILL)
        worker_pid = cluster.spark.kill("worker-1")
        killed_at = time.monotonic() - began

        for proc, _ in edges:
            assert proc.wait(timeout=600) == 0, f"edge shard failed; see {cluster.directory}/edge-*.log"
        fleet_done = time.monotonic()
        ledger = {k: v for _, path in edges for k, v in read_ledger(path).items()}
        truth = settle(cluster, ledger, options)
        settled = time.monotonic()

        assert not alive(broker_pid) and not alive(worker_pid), "the killed daemons stayed dead"
        rows = {r.name: r for r in cluster.node_statuses()}
        assert sum(r.healthy for n, r in rows.items() if n.startswith("kafka-")) == 2, rows
        assert rows["spark-worker-2"].healthy and not rows["spark-worker-1"].running, rows
        services = {r.name: r for r in pipeline.status(options.directory)[1]}
        REPORT.extend([
            f"readings {truth.readings:,} ({HOUSEHOLDS} households × {MONTHS} months at {INTERVAL}, 2 edge shards), "
            f"stored {truth.stored:,}, lost {truth.lost}, doubled {truth.doubled}",
            f"killed -9 at {killed_at:.0f}s: kafka broker {broker} (partition-0 leader of the readings) and "
            "spark worker-1; both left dead",
            f"wall time: cluster ready → canary stored {ready - began:.0f}s, fleet {fleet_done - ready:.0f}s, "
            f"settle {settled - fleet_done:.0f}s, test total {settled - began:.0f}s",
            "restarts: " + (", ".join(f"{n} {r.restarts}" for n, r in services.items()) or "-"),
        ])
        assert (truth.lost, truth.doubled) == (0, 0), list(truth.differ.items())[:3]
        assert truth.ok and truth.readings > 0
    finally:
        for proc, _ in edges:
            if proc.poll() is None:
                proc.kill()
        pipeline.down(options.directory, timeout_s=30)


def test_stack_up_with_three_brokers_reports_each_node_and_down_stops_them_all(cluster: Cluster) -> None:
    assert {k: v for k, v in cluster.statuses.items() if k.startswith("kafka")} == {
        "kafka-1": "healthy", "kafka-2": "healthy", "kafka-3": "healthy"}, cluster.statuses
    pids = [pid for pid in (read_pid(node.pid_file) for node in cluster.kafka.nodes) if pid is not None and alive(pid)]
    assert len(pids) >= 2, "the brokers run (all but the one the test above killed)"
    down = stack("down", cluster.stack_env)
    assert down.returncode == 0, down.stdout + down.stderr[-2000:]
    assert not any(alive(pid) for pid in pids)
    after = stack("status", cluster.stack_env)
    assert after.returncode == 3 and set(status_rows(after.stdout).values()) == {"stopped"}, after.stdout
