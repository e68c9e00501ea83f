"""The Kafka cluster's pure parts: ports, the bootstrap list, each node's server.properties, and which
layout ``stack status``/``down`` follow."""

from __future__ import annotations

from pathlib import Path

import pytest
from apt_energy.config import Secret
from apt_energy.core.errors import ConfigError, ServiceError
from apt_energy.core.kafka import KafkaClient, cluster_bootstrap
from apt_energy.stack.kafka import render_server_properties
from apt_energy.stack.kafka_cluster import cluster_ports, running_brokers

from apt_energy import config

pytestmark = pytest.mark.unit

ADMIN = KafkaClient(bootstrap="127.0.0.1:9092", username="apt-admin", password=Secret("pw"))


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_a_cluster_bootstraps_from_every_node_and_a_single_broker_or_an_explicit_list_is_left_alone() -> None:
    assert cluster_bootstrap("127.0.0.1:9092", 3) == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    assert cluster_bootstrap("127.0.0.1:9092", 1) == "127.0.0.1:9092"
    assert cluster_bootstrap("a:1,b:2", 3) == "a:1,b:2"
    with pytest.raises(ConfigError, match="host:port"):
        cluster_bootstrap("localhost", 3)


def test_clients_of_a_configured_cluster_get_every_broker(tmp_path: Path) -> None:
    settings = config.load(environ={"APT_ENERGY_STACK_KAFKA_BROKERS": "3", "APT_ENERGY_KAFKA_BOOTSTRAP": "h:9100",
                                    "APT_ENERGY_KAFKA_BRIDGE_PASSWORD": "x"}, dotenv=None)
    assert settings.stack.kafka_brokers == 3
    assert KafkaClient.from_settings(settings, "bridge").bootstrap == "h:9100,h:9102,h:9104"


def test_the_broker_count_is_checked_when_loaded() -> None:
    with pytest.raises(ConfigError, match="kafka_brokers"):
        config.load(environ={"APT_ENERGY_STACK_KAFKA_BROKERS": "0"}, dotenv=None)


def test_node_ports_are_the_base_ports_plus_two_per_node_and_must_not_collide() -> None:
    assert cluster_ports(9092, 9093, 3) == [(9092, 9093), (9094, 9095), (9096, 9097)]
    with pytest.raises(ServiceError, match="collide"):
        cluster_ports(9092, 9094, 3)


def test_a_single_node_is_its_own_quorum_with_unreplicated_topics(tmp_path: Path) -> None:
    p = props(render_server_properties(host="127.0.0.1", port=9092, controller_port=9093, log_dir=tmp_path,
                                       admin=ADMIN))
    assert p["node.id"] == "1" and p["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert p["offsets.topic.replication.factor"] == "1" and p["min.insync.replicas"] == "1"


def test_a_cluster_node_names_every_voter_and_replicates_with_two_in_sync(tmp_path: Path) -> None:
    voters = "1@127.0.0.1:9093,2@127.0.0.1:9095,3@127.0.0.1:9097"
    p = props(render_server_properties(host="127.0.0.1", port=9094, controller_port=9095, log_dir=tmp_path,
                                       admin=ADMIN, node_id=2, voters=voters, replicas=3))
    assert p["node.id"] == "2" and p["controller.quorum.voters"] == voters
    assert p["listeners"] == "CLIENT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert p["default.replication.factor"] == p["offsets.topic.replication.factor"] == "3"
    assert p["min.insync.replicas"] == p["transaction.state.log.min.isr"] == "2"
    # the same security as the single broker: SCRAM for clients, PLAIN between controllers, ACLs
    assert p["allow.everyone.if.no.acl.found"] == "false"
    assert p["sasl.mechanism.controller.protocol"] == "PLAIN"


def test_status_and_down_follow_the_layout_that_runs_and_none_runs_without_pid_files(tmp_path: Path) -> None:
    settings = config.load(environ={"APT_ENERGY_STACK_RUN_DIR": str(tmp_path)}, dotenv=None)
    assert running_brokers(settings.run_dir) is None
    (tmp_path / "kafka-cluster").mkdir()
    (tmp_path / "kafka-cluster" / "brokers").write_text("3\n")
    assert running_brokers(settings.run_dir) is None   # recorded, but no node alive


def test_the_stream_job_gives_up_on_a_dead_broker_sooner_only_when_there_are_others() -> None:
    cluster = KafkaClient(bootstrap="h:1,h:3,h:5", username="apt-spark", password=Secret("pw"))
    assert cluster.spark_options()["kafka.default.api.timeout.ms"] == "20000"
    assert "kafka.default.api.timeout.ms" not in ADMIN.spark_options()
