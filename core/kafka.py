"""How every component talks to Kafka: as its own principal, authenticated with SASL/SCRAM.

One place builds the client settings, for confluent-kafka (librdkafka names) and for Spark's Kafka source
(``kafka.``-prefixed Java client names), so that no component forgets authentication. The broker's side
— users and ACLs — is in ``apt_energy.stack.kafka``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from apt_energy.config import Secret, Settings
from apt_energy.config.settings import KafkaSettings
from apt_energy.core.errors import ConfigError

KafkaRole = Literal["admin", "bridge", "spark"]
# Spark's Kafka source names its consumer groups "<groupIdPrefix>-<uuid>…"; the spark principal may read
# groups with this prefix and no others.
SPARK_GROUP_PREFIX = "apt-spark"
_PASSWORD_ENV = {"admin": "APT_ENERGY_KAFKA_ADMIN_PASSWORD", "bridge": "APT_ENERGY_KAFKA_BRIDGE_PASSWORD",
                 "spark": "APT_ENERGY_KAFKA_SPARK_PASSWORD"}


@dataclass(frozen=True)
class KafkaClient:
    """One principal's connection settings; the password stays masked in ``repr``."""

    bootstrap: str
    username: str
    password: Secret
    security_protocol: str = "SASL_PLAINTEXT"
    mechanism: str = "SCRAM-SHA-256"

    @classmethod
    def from_settings(cls, settings: Settings, role: KafkaRole) -> KafkaClient:
        """The door: ``role``'s client from the settings tree (raises ConfigError without its password)."""
        s = settings.secrets
        password = {"admin": s.kafka_admin_password, "bridge": s.kafka_bridge_password,
                    "spark": s.kafka_spark_password}[role]
        return kafka_client(settings.kafka, role, password, brokers=settings.stack.kafka_brokers)

    def config(self, **extra: Any) -> dict[str, Any]:
        """confluent-kafka (librdkafka) configuration, plus ``extra`` settings."""
        # librdkafka's informational lines (e.g. BGQUEUE when an admin client closes) are noise for users;
        # warnings and errors still show.
        quiet = {"log_level": 4}
        if self.security_protocol == "PLAINTEXT":
            return {"bootstrap.servers": self.bootstrap, **quiet, **extra}
        return {"bootstrap.servers": self.bootstrap, **quiet, "security.protocol": self.security_protocol,
                "sasl.mechanism": self.mechanism, "sasl.username": self.username,
                "sasl.password": self.password.reveal(), **extra}

    def spark_options(self) -> dict[str, str]:
        """Options for ``spark.readStream.format("kafka")``. Spark redacts values that mention a password
        in its logs and UI (``spark.redaction.regex``)."""
        if self.security_protocol == "PLAINTEXT":
            return {"groupIdPrefix": SPARK_GROUP_PREFIX, "kafka.bootstrap.servers": self.bootstrap,
                    **self._failover_options()}
        user, password = (_jaas_quote(x) for x in (self.username, self.password.reveal()))
        return {"groupIdPrefix": SPARK_GROUP_PREFIX, **self._failover_options(),
                "kafka.bootstrap.servers": self.bootstrap, "kafka.security.protocol": self.security_protocol,
                "kafka.sasl.mechanism": self.mechanism,
                "kafka.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
                                          f'username="{user}" password="{password}";'}

    def _failover_options(self) -> dict[str, str]:
        # With several brokers, a lookup that waits on a dead one should give up soon and let Spark retry
        # with a new client (which picks a live broker); the defaults kept the stream job waiting ~100 s
        # after a kill -9. One broker has nowhere else to go: there the defaults ride out its restart.
        if "," not in self.bootstrap:
            return {}
        return {"kafka.default.api.timeout.ms": "20000", "kafka.request.timeout.ms": "10000"}


def kafka_client(kafka: KafkaSettings, role: KafkaRole, password: Secret, *, brokers: int = 1) -> KafkaClient:
    """``role``'s client from the Kafka section and its one ``password`` (``brokers``: the native stack's
    cluster size, see :func:`cluster_bootstrap`)."""
    username = {"admin": kafka.admin_user, "bridge": kafka.bridge_user, "spark": kafka.spark_user}[role]
    if not password and kafka.security_protocol != "PLAINTEXT":
        raise ConfigError(f"no Kafka password for {username}: set {_PASSWORD_ENV[role]} in the environment or .env "
                          "(`apt-energy stack up` generates one)")
    return KafkaClient(bootstrap=cluster_bootstrap(kafka.bootstrap, brokers), username=username, password=password,
                       security_protocol=kafka.security_protocol, mechanism=kafka.sasl_mechanism)


def cluster_bootstrap(bootstrap: str, brokers: int) -> str:
    """Every broker of the native stack's cluster as the bootstrap list, so a client still connects while
    one of them is down: node ``i`` (0-based) listens on the bootstrap port + 2·i (``stack.kafka_brokers``).
    A list given explicitly (a cluster run elsewhere) is left as it is."""
    if brokers <= 1 or "," in bootstrap:
        return bootstrap
    host, _, port = bootstrap.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"kafka.bootstrap: expected host:port, got {bootstrap!r}")
    return ",".join(f"{host}:{int(port) + 2 * i}" for i in range(brokers))


def _jaas_quote(text: str) -> str:
    # JAAS values are double-quoted; a quote or backslash inside would end the value early.
    return text.replace("\\", "\\\\").replace('"', '\\"')
