"""Apache Kafka in KRaft mode (combined broker + controller nodes) from the official Maven Central jars.

One node by default; with ``stack.kafka_brokers`` > 1 each :class:`Kafka` is one node of the cluster
that :mod:`apt_energy.stack.kafka_cluster` runs (node ``i`` on the bootstrap / controller port + 2·(i-1)).

Main class ``kafka.Kafka``; storage formatted once with ``kafka.tools.StorageTool``; log4j2 writes to a
file under the run dir. Topics are created with confluent-kafka's AdminClient.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from apt_energy.config import Secret, Settings
from apt_energy.config.settings import KafkaSettings
from apt_energy.core.errors import ServiceError
from apt_energy.core.kafka import SPARK_GROUP_PREFIX, KafkaClient, KafkaRole, kafka_client
from apt_energy.stack.jars import kafka_jars
from apt_energy.stack.private import SERVER_UMASK, narrow_tree, private_dir
from apt_energy.stack.process import alive, is_ours, port_open, read_pid, require_binary, spawn, terminate, wait_until
from apt_energy.stack.secrets import write_private
from apt_energy.stack.service import ServiceStatus

logger = logging.getLogger(__name__)


def min_insync(replicas: int) -> int:
    """Replicas that must have a write before it is acknowledged (``acks=all``): 2 of 3, so one broker may
    be down without stopping writes or losing an acknowledged one; 1 without replication."""
    return max(1, min(2, replicas - 1))


def render_server_properties(*, host: str, port: int, controller_port: int, log_dir: Path, admin: KafkaClient,
                             node_id: int = 1, voters: str | None = None, replicas: int = 1) -> str:
    """One combined broker + controller (node ``node_id`` of the quorum ``voters``, ``id@host:port,…``;
    default: this node alone), its topics replicated ``replicas`` times. Clients authenticate with
    SASL/SCRAM on the one client listener and are authorised by ACLs (nothing is allowed without one); the
    controller listener takes SASL/PLAIN from the cluster's nodes (SCRAM users live in the metadata the
    controller serves, so it cannot use them). The file holds the admin's password: it is written 0600
    under the run directory."""
    user, password = (_jaas(x) for x in (admin.username, admin.password.reveal()))
    scram = admin.mechanism.lower()
    return "\n".join([
        "# written by `apt-energy stack up`; edit config/pipeline.yaml instead",
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters or f'{node_id}@{host}:{controller_port}'}",
        f"listeners=CLIENT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        f"advertised.listeners=CLIENT://{host}:{port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=CLIENT",
        f"listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:{admin.security_protocol}",
        f"sasl.enabled.mechanisms={admin.mechanism}",
        f"sasl.mechanism.inter.broker.protocol={admin.mechanism}",
        f"listener.name.client.{scram}.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule "
        f'required username="{user}" password="{password}";',
        "sasl.mechanism.controller.protocol=PLAIN",
        "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
        "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
        f'required username="{user}" password="{password}" user_{user}="{password}";',
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users=User:{admin.username}",
        "allow.everyone.if.no.acl.found=false",
        f"log.dirs={log_dir}",
        "num.partitions=1",
        # Internal topics as replicated as the pipeline's own (one replica on a single node).
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_insync(replicas)}",
        f"offsets.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_insync(replicas)}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_insync(replicas)}",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=false",
        "log.retention.hours=168",
        "",
    ])


def _jaas(text: str) -> str:
    if any(c in text for c in '"\\;\n'):
        raise ServiceError("Kafka user names and passwords may not contain quotes, backslashes, ';' or newlines",
                           service="kafka")
    return text


def render_log4j2(log_file: Path) -> str:
    return "\n".join([
        "status = warn",
        "appender.file.type = RollingFile",
        "appender.file.name = file",
        f"appender.file.fileName = {log_file}",
        f"appender.file.filePattern = {log_file}.%i",
        "appender.file.layout.type = PatternLayout",
        "appender.file.layout.pattern = [%d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX}{UTC}] %p %m (%c)%n",  # ISO, zone
        "appender.file.policies.type = Policies",
        "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size = 20MB",
        "appender.file.strategy.type = DefaultRolloverStrategy",
        "appender.file.strategy.max = 3",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.file.ref = file",
        "logger.kafka.name = kafka",
        "logger.kafka.level = WARN",
        "logger.apache.name = org.apache.kafka",
        "logger.apache.level = WARN",
        "",
    ])


def new_cluster_id() -> str:
    """A KRaft cluster id (16 random bytes, base64url). One starting with '-' would be read by the
    StorageTool's argument parser as an option, so those are drawn again."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return require_binary("java", package="openjdk-17-jre-headless")


@dataclass(frozen=True)
class KafkaAdmin:
    """Kafka as the stack manages it, as its admin: the Kafka section (topics, users), the cluster size and
    the principals' passwords (the stack sets them on the broker: nothing else holds them all). Built at
    one door, :meth:`from_settings`; a missing password fails when a client of it is first needed."""

    kafka: KafkaSettings
    brokers: int
    passwords: dict[str, Secret]      # role → password (masked in repr)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaAdmin:
        s = settings.secrets
        return cls(settings.kafka, settings.stack.kafka_brokers, {
            "admin": s.kafka_admin_password, "bridge": s.kafka_bridge_password, "spark": s.kafka_spark_password})

    def client(self, role: KafkaRole = "admin") -> KafkaClient:
        """``role``'s client (the admin's by default)."""
        return kafka_client(self.kafka, role, self.passwords[role], brokers=self.brokers)


@dataclass(frozen=True)
class KafkaOptions:
    """What a native Kafka node (or cluster) runs with: what it manages as the admin, where it keeps its
    data and jars, its controller port and heap."""

    cluster: KafkaAdmin
    run_dir: Path
    cache_dir: Path
    controller_port: int = 9093
    heap: str = "768m"

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaOptions:
        st = settings.stack
        return cls(KafkaAdmin.from_settings(settings), settings.run_dir, settings.cache_dir,
                   controller_port=st.kafka_controller_port, heap=st.kafka_heap)


class Kafka:
    """One Kafka node: the whole single-broker stack, or node ``node`` of a ``stack.kafka_brokers`` cluster
    (its data under ``<run dir>/kafka-cluster/node-<node>``, formatted with the cluster's ``cluster_id``)."""

    def __init__(self, options: KafkaOptions, *, node: int = 1, cluster_id: str | None = None) -> None:
        self.options = options
        self.cluster = options.cluster
        self.node = node
        self.cluster_id = cluster_id
        self.brokers = options.cluster.brokers
        if self.brokers == 1:
            self.name, self.dir = "kafka", options.run_dir / "kafka"
        else:
            self.name, self.dir = f"kafka-{node}", options.run_dir / "kafka-cluster" / f"node-{node}"
        self.pid_file = self.dir / "pid"

    @classmethod
    def from_settings(cls, settings: Settings, *, node: int = 1, cluster_id: str | None = None) -> Kafka:
        return cls(KafkaOptions.from_settings(settings), node=node, cluster_id=cluster_id)

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.cluster.kafka.bootstrap.rpartition(":")
        return host, int(port) + 2 * (self.node - 1)

    @property
    def endpoint(self) -> str:
        host, port = self.host_port
        return f"{host}:{port}"

    @property
    def controller_port(self) -> int:
        return self.options.controller_port + 2 * (self.node - 1)

    def voters(self) -> str:
        """The controller quorum: every node of the cluster (``id@host:port``)."""
        host, _ = self.host_port
        base = self.options.controller_port
        return ",".join(f"{i}@{host}:{base + 2 * (i - 1)}" for i in range(1, self.brokers + 1))

    def up(self) -> None:
        self.wait_healthy(self.start())
        ensure_principals(self.cluster)
        self.create_topics()
        prune_acls(self.cluster)
        logger.info("kafka up bootstrap=%s", self.cluster.kafka.bootstrap)

    def start(self) -> int:
        """Start this node unless it runs already; its pid. (A cluster node is healthy only once a
        majority of the quorum runs, so a cluster starts every node before it waits for any.)"""
        pid = read_pid(self.pid_file)
        if not is_ours(pid, str(self.dir)):
            pid = self._start()
        assert pid is not None
        return pid

    def wait_healthy(self, pid: int) -> None:
        wait_until(self._healthy, timeout=120, what=self.name, log_file=self.log_file, alive=lambda: alive(pid))

    def _start(self) -> int:
        java = java_binary()
        host, port = self.host_port
        controller_port = self.controller_port
        for p in (port, controller_port):
            if port_open(host, p):
                raise ServiceError(f"port {p} is in use by another process; set APT_ENERGY_KAFKA_BOOTSTRAP / "
                                 "APT_ENERGY_STACK_KAFKA_CONTROLLER_PORT to free ports")
        classpath = f"{kafka_jars(self.options.cache_dir)}/*"
        data = self.dir / "data"
        # Segments hold every household's readings and the metadata log the SCRAM verifiers and ACLs.
        private_dir(self.dir)
        narrow_tree(self.dir)
        admin = self.cluster.client()
        props = self.dir / "server.properties"
        write_private(props, render_server_properties(host=host, port=port, controller_port=controller_port,
                                                      log_dir=data, admin=admin, node_id=self.node,
                                                      voters=self.voters(), replicas=min(self.brokers, 3)))
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(render_log4j2(self.log_file))
        jvm = [java, f"-Xmx{self.options.heap}", f"-Xms{self.options.heap}",
               "-XX:+UseG1GC", "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}",
               f"-Dkafka.logs.dir={self.dir}", "-cp", classpath]
        marker = self.dir / "scram"
        if (data / "meta.properties").exists() and not marker.exists():
            # Formatted by an older apt-energy without users: there is no way to add the first SCRAM user
            # to such a cluster without opening it, so the local stack's Kafka starts again empty.
            logger.warning("kafka data in %s predates authentication; formatting it again (topics are empty)", data)
            shutil.rmtree(data, ignore_errors=True)
        if not (data / "meta.properties").exists():
            shutil.rmtree(data, ignore_errors=True)
            self._format(jvm, props)
            marker.touch()
        return spawn([*jvm, "kafka.Kafka", str(props)], pid_file=self.pid_file, log_file=self.dir / "stdout.log")

    def _format(self, jvm: list[str], props: Path) -> None:
        """Format the storage with the cluster's SCRAM users. The StorageTool takes them only as arguments,
        so they go through a java @argfile (0600, deleted after) and never appear on a command line."""
        args = storage_format_args(self.cluster, cluster_id=self.cluster_id or new_cluster_id(), config=props)
        argfile = self.dir / "format.args"
        write_private(argfile, "\n".join(f'"{a}"' for a in args) + "\n")
        try:
            result = subprocess.run([*jvm, f"@{argfile}"], capture_output=True, text=True,  # noqa: S603
                                    check=False, umask=SERVER_UMASK)
        finally:
            argfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"kafka storage format failed: {(result.stderr or result.stdout).strip()[-300:]}",
                               service="kafka")

    def _healthy(self) -> bool:
        if not port_open(*self.host_port):
            return False
        # Ask this node itself, and require that it has joined the cluster (is a registered broker).
        own = dataclasses.replace(self.cluster.client(), bootstrap=self.endpoint)
        return broker_reachable(own, node_id=self.node)

    def create_topics(self, names: dict[str, dict[str, str]] | None = None, partitions: int | None = None) -> None:
        ensure_topics(self.cluster, names, partitions)

    def down(self) -> None:
        pid = read_pid(self.pid_file)
        if is_ours(pid, str(self.dir)):
            assert pid is not None
            terminate(pid, timeout=60)
        self.pid_file.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = read_pid(self.pid_file)
        running = is_ours(pid, str(self.dir))
        return ServiceStatus(self.name, running, running and self._healthy(), self.endpoint,
                             pid=pid if running else None)


def storage_format_args(cluster: KafkaAdmin, *, cluster_id: str, config: Path) -> list[str]:
    """The StorageTool's main class and arguments: format with the pipeline principals' SCRAM users (the
    first one cannot be added later). They hold passwords: pass them in a 0600 java @argfile only."""
    args = ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)]
    for role in ("admin", "bridge", "spark"):
        client = cluster.client(role)  # type: ignore[arg-type]
        args += ["--add-scram", f"{client.mechanism}=[name={_jaas(client.username)},"
                                f"password={_jaas(client.password.reveal())}]"]
    return args


def broker_reachable(client: KafkaClient, *, timeout_s: float = 3, node_id: int | None = None) -> bool:
    """A broker answers ``client``'s (authenticated) metadata request (naming broker ``node_id`` among the
    cluster's live brokers, if given)."""
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient(client.config()).list_topics(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - any client error simply means "not reachable yet"
        return False
    return len(md.brokers) >= 1 if node_id is None else node_id in md.brokers


def ensure_topics(cluster: KafkaAdmin, names: dict[str, dict[str, str]] | None = None,
                  partitions: int | None = None) -> None:
    """Create the pipeline's topics if missing: readings, devices (compacted), dead letters; on a cluster
    with 3 replicas each and ``min.insync.replicas`` 2 (the bridge produces with ``acks=all``)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    k = cluster.kafka
    wanted = names if names is not None else {
        k.readings_topic: {},
        k.devices_topic: {"cleanup.policy": "compact"},
        k.dead_letter_topic: {},
    }
    admin = AdminClient(cluster.client().config())
    existing = set(admin.list_topics(timeout=10).topics)
    replicas = min(cluster.brokers, 3)
    durable = {"min.insync.replicas": str(min_insync(replicas))}
    new = [NewTopic(name, num_partitions=partitions or k.partitions, replication_factor=replicas,
                    config={**durable, **cfg})
           for name, cfg in wanted.items() if name not in existing]
    for name, future in (admin.create_topics(new) if new else {}).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise ServiceError(f"could not create kafka topic {name}: {exc}") from exc


def principal_acls(k: KafkaSettings) -> list[tuple[str, str, str, str, str]]:
    """(principal, resource type, pattern type, resource name, operation) the pipeline's principals need:
    the bridge writes the three topics (idempotently), the stream job reads them with its own consumer
    groups. Nothing else is allowed (``allow.everyone.if.no.acl.found=false``)."""
    topics = (k.readings_topic, k.devices_topic, k.dead_letter_topic)
    bridge, spark = f"User:{k.bridge_user}", f"User:{k.spark_user}"
    acls = [(bridge, "BROKER", "LITERAL", "kafka-cluster", "IDEMPOTENT_WRITE")]  # BROKER: the cluster resource
    for topic in topics:
        acls += [(bridge, "TOPIC", "LITERAL", topic, "WRITE"), (bridge, "TOPIC", "LITERAL", topic, "DESCRIBE"),
                 (spark, "TOPIC", "LITERAL", topic, "READ"), (spark, "TOPIC", "LITERAL", topic, "DESCRIBE")]
    acls.append((spark, "GROUP", "PREFIXED", SPARK_GROUP_PREFIX, "READ"))
    return acls


def ensure_principals(cluster: KafkaAdmin) -> None:
    """As the admin: (re)set each principal's SCRAM password from the environment (so rotating one is
    `edit .env` + `stack up`) and create the ACLs. Idempotent."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialAlteration,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient(cluster.client().config())
    upserts: list[UserScramCredentialAlteration] = []
    for role in ("admin", "bridge", "spark"):
        client = cluster.client(role)  # type: ignore[arg-type]
        mechanism = ScramMechanism[client.mechanism.replace("-", "_")]
        upserts.append(UserScramCredentialUpsertion(client.username, ScramCredentialInfo(mechanism, 4096),
                                                    client.password.reveal().encode()))
    try:
        for future in admin.alter_user_scram_credentials(upserts).values():
            future.result(timeout=30)
    except KafkaException as exc:
        raise ServiceError(f"could not set Kafka users: {exc}", service="kafka") from exc
    ensure_acls(cluster)
    logger.info("kafka principals ensured users=%d", len(upserts))


def ensure_acls(cluster: KafkaAdmin) -> None:
    """As the admin: the ACLs of :func:`principal_acls` for the cluster's topics (idempotent; tests and
    benchmarks that run the pipeline on topics of their own call it for those)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    admin = AdminClient(cluster.client().config())
    bindings = [AclBinding(ResourceType[rtype], name, ResourcePatternType[ptype], principal, "*",
                           AclOperation[op], AclPermissionType.ALLOW)
                for principal, rtype, ptype, name, op in principal_acls(cluster.kafka)]
    try:
        for future in admin.create_acls(bindings).values():
            future.result(timeout=30)
    except KafkaException as exc:
        raise ServiceError(f"could not set Kafka ACLs: {exc}", service="kafka") from exc


def _topic_filter(name: str | None) -> object:
    """An ACL filter for every ACL on the literal topic ``name`` (``None``: on any topic)."""
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, None, None,  # type: ignore[arg-type]
                            AclOperation.ANY, AclPermissionType.ANY)


def topic_acls(cluster: KafkaAdmin, topic: str | None = None) -> list[object]:
    """As the admin: the ACL bindings on the literal topic ``topic`` (``None``: on every topic)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(cluster.client().config())
    return list(admin.describe_acls(_topic_filter(topic)).result(timeout=30))  # type: ignore[arg-type]


def delete_topic_acls(cluster: KafkaAdmin, topics: list[str]) -> None:
    """As the admin: every ACL on the (literal) topics ``topics``, e.g. when a test or a benchmark that
    granted them deletes its topics (Kafka keeps a topic's ACLs after the topic is gone)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    if not topics:
        return
    admin = AdminClient(cluster.client().config())
    try:
        for future in admin.delete_acls([_topic_filter(name) for name in topics]).values():  # type: ignore[misc]
            future.result(timeout=30)
    except KafkaException as exc:
        raise ServiceError(f"could not delete Kafka ACLs: {exc}", service="kafka") from exc


def dangling_acl_topics(cluster: KafkaAdmin) -> list[str]:
    """Topics that ACLs name but that no longer exist (left by a test or benchmark that was stopped before
    it cleaned up)."""
    from confluent_kafka.admin import AdminClient

    named = {b.name for b in topic_acls(cluster)}  # type: ignore[attr-defined]
    existing = set(AdminClient(cluster.client().config()).list_topics(timeout=10).topics)
    return sorted(named - existing)


def prune_acls(cluster: KafkaAdmin) -> int:
    """Delete the ACLs of topics that are gone; returns how many topics had some."""
    gone = dangling_acl_topics(cluster)
    delete_topic_acls(cluster, gone)
    if gone:
        logger.info("deleted the ACLs of topics=%d that no longer exist", len(gone))
    return len(gone)


def reset_topics(cluster: KafkaAdmin) -> list[str]:
    """Delete the pipeline's topics and create them again, empty (a reproducible demo or test run).

    Returns their names. Deletion completes asynchronously, so this waits until the broker no longer
    lists them before creating them again."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    k = cluster.kafka
    topics = [k.readings_topic, k.devices_topic, k.dead_letter_topic]
    admin = AdminClient(cluster.client().config())
    doomed = [t for t in topics if t in set(admin.list_topics(timeout=10).topics)]
    for name, future in (admin.delete_topics(doomed) if doomed else {}).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            raise ServiceError(f"could not delete kafka topic {name}: {exc}", service="kafka") from exc
    wait_until(lambda: not set(doomed) & set(admin.list_topics(timeout=10).topics), timeout=30,
               what="kafka topic deletion")
    ensure_topics(cluster)
    return topics
