"""The files docker compose's servers read, made with the native stack's own functions.

compose.yaml's one-shot ``setup`` service (the project image, as root, no network exposure) runs
``apt-energy stack compose-setup`` before any server starts:

- refuses ``.env.example``'s placeholders, one line naming the variable;
- the broker's CA and server certificate (:mod:`apt_energy.stack.pki`, kept in a volume only ``setup``
  mounts), a copy of the CA certificate for the clients, and the server certificate and key for Mosquitto;
- Mosquitto's dynamic-security file: one identity per gateway (:mod:`apt_energy.stack.dynsec`, as
  ``stack up`` writes it), plus a ``health`` identity that may read ``$SYS/broker/uptime`` and nothing else,
  with a ``mosquitto_sub`` options file for the healthcheck (no password on a command line);
- Kafka's ``server.properties`` (:func:`apt_energy.stack.kafka.render_server_properties` with compose's
  listeners), the StorageTool argument file that formats the storage with the SCRAM users, and the
  healthcheck's client properties.

Each file is private (0600, directories 0700) and owned by the user of the image that reads it.
PostgreSQL roles, migrations, Kafka users' passwords and ACLs and the topics come later, from
``apt-energy stack init`` (:mod:`apt_energy.stack.prepare`) once the servers are healthy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.config.settings import refuse_example_secrets
from apt_energy.core.errors import ConfigError
from apt_energy.core.kafka import KafkaClient
from apt_energy.core.mqtt import device_password
from apt_energy.stack.dynsec import password_hash
from apt_energy.stack.kafka import KafkaAdmin, new_cluster_id, render_server_properties, storage_format_args
from apt_energy.stack.mosquitto import MosquittoOptions, render_identities
from apt_energy.stack.pki import ensure_server_tls
from apt_energy.stack.secrets import write_private

logger = logging.getLogger(__name__)

# Users of the server images (eclipse-mosquitto, apache/kafka) that must read the files.
MOSQUITTO_UID = 1883
KAFKA_UID = 1000
# Every secret compose passes to some service: the setup service checks them all before anything starts.
COMPOSE_SECRETS = ("APT_ENERGY_MQTT_DEVICE_SECRET", "APT_ENERGY_MQTT_BRIDGE_PASSWORD",
                   "APT_ENERGY_MQTT_OPERATOR_PASSWORD", "APT_ENERGY_MQTT_ADMIN_PASSWORD",
                   "APT_ENERGY_KAFKA_ADMIN_PASSWORD", "APT_ENERGY_KAFKA_BRIDGE_PASSWORD",
                   "APT_ENERGY_KAFKA_SPARK_PASSWORD", "APT_ENERGY_DB_ADMIN_PASSWORD", "APT_ENERGY_DB_OWNER_PASSWORD",
                   "APT_ENERGY_DB_PASSWORD", "APT_ENERGY_DB_READER_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
HEALTH_USER = "health"
BROKER_HOSTS = ("mosquitto", "localhost", "127.0.0.1")


@dataclass(frozen=True)
class Paths:
    """Where the volumes are: ``setup`` sees them under its own mount points, the servers under theirs."""

    pki: Path            # the CA's key: setup only
    ca: Path             # ca.crt for every MQTT client
    mosquitto: Path      # Mosquitto's TLS files, identities and healthcheck options
    kafka: Path          # Kafka's properties and format arguments
    kafka_data: Path     # Kafka's log dir


# compose.yaml's mount points: in the setup container, and in the servers' containers.
SETUP = Paths(pki=Path("/setup/pki"), ca=Path("/setup/ca"), mosquitto=Path("/setup/mosquitto"),
              kafka=Path("/setup/kafka"), kafka_data=Path("/setup/kafka-data"))
SERVERS = Paths(pki=Path("/nonexistent"), ca=Path("/etc/apt-energy/ca"), mosquitto=Path("/mosquitto/secure"),
                kafka=Path("/etc/kafka/secure"), kafka_data=Path("/var/lib/kafka/data"))
KAFKA_CLIENT_PORT = 9092
KAFKA_HOST_PORT = 29092
KAFKA_CONTROLLER_PORT = 9093


def check_secrets(env: Mapping[str, str]) -> None:
    """One line naming the first secret that is missing or still has its ``.env.example`` value."""
    refuse_example_secrets(env, COMPOSE_SECRETS)
    for name in COMPOSE_SECRETS:
        if not env.get(name):
            raise ConfigError(f"{name} is not set: run `apt-energy stack secrets` (it writes .env) and start again")


def render_health_identity(identities: str, password: str) -> str:
    """``identities`` (the dynamic-security JSON) plus a healthcheck login that may read the uptime only."""
    data = json.loads(identities)
    data["roles"].append({"rolename": HEALTH_USER, "acls": [
        {"acltype": "subscribePattern", "topic": "$SYS/broker/uptime", "priority": 0, "allow": True}]})
    data["clients"].append({"username": HEALTH_USER, "roles": [{"rolename": HEALTH_USER}],
                            **password_hash(password)})
    return json.dumps(data, indent=1)


def render_mosquitto_sub_options(*, password: str, ca_file: Path, port: int = 8883, host: str = "localhost") -> str:
    """``mosquitto_sub`` reads default options from ``$XDG_CONFIG_HOME/mosquitto_sub``, one per line."""
    if any(c.isspace() for c in password):
        raise ConfigError("the healthcheck password may not contain white space")
    return f"-h {host}\n-p {port}\n--cafile {ca_file}\n-u {HEALTH_USER}\n-P {password}\n"


def render_kafka_properties(settings: Settings, *, log_dir: Path, host: str = "kafka", bind: str = "",
                            client_port: int = KAFKA_CLIENT_PORT, host_port: int = KAFKA_HOST_PORT,
                            controller_port: int = KAFKA_CONTROLLER_PORT,
                            advertised_host_port: int | None = None) -> str:
    """The native broker's properties (SCRAM on the client listeners, StandardAuthorizer, no ACL no access,
    an authenticated controller listener) with compose's listeners: ``CLIENT`` (advertised as ``host``) for
    the compose network, ``HOST`` for the published port, the controller on the container's loopback only.
    ``bind`` empty: every interface of the container (tests pass 127.0.0.1 and free ports).
    ``advertised_host_port``: the port compose publishes ``HOST`` on, when not ``host_port`` itself."""
    native = render_server_properties(host=host, port=client_port, controller_port=controller_port,
                                      log_dir=log_dir, admin=KafkaClient.from_settings(settings, "admin"))
    protocol = settings.kafka.security_protocol
    if protocol == "PLAINTEXT":
        raise ConfigError("kafka.security_protocol: compose's Kafka authenticates every client; expected "
                          "SASL_PLAINTEXT, got PLAINTEXT")
    scram = settings.kafka.sasl_mechanism.lower()
    compose = {
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"CLIENT://{bind}:{client_port},HOST://{bind}:{host_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"CLIENT://{host}:{client_port},HOST://localhost:{advertised_host_port or host_port}",
        "listener.security.protocol.map": f"CONTROLLER:SASL_PLAINTEXT,CLIENT:{protocol},HOST:{protocol}",
        # The broker side of SCRAM needs a login module per listener; only CLIENT's logs in (inter-broker).
        f"listener.name.host.{scram}.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }
    kept = [line for line in native.splitlines()
            if not line.startswith("#") and line.partition("=")[0] not in compose]
    return "\n".join(["# written by compose's setup service (stack/compose.py); edit config/pipeline.yaml instead",
                      *kept, *(f"{key}={value}" for key, value in compose.items()), ""])


def render_kafka_client_properties(settings: Settings, *, bootstrap: str) -> str:
    """The healthcheck's ``--command-config``: Kafka's tools read the password from this file."""
    admin = KafkaClient.from_settings(settings, "admin")
    spark = admin.spark_options()  # the JAAS line, quoted as the Java clients want it
    return "\n".join([f"bootstrap.servers={bootstrap}", f"security.protocol={admin.security_protocol}",
                      f"sasl.mechanism={admin.mechanism}", f"sasl.jaas.config={spark['kafka.sasl.jaas.config']}",
                      ""])


def setup(settings: Settings, *, env: Mapping[str, str], setup: Paths = SETUP, servers: Paths = SERVERS,
          chown: bool = True) -> None:
    """Write every file of the module docstring into ``setup``'s directories, naming ``servers``' paths
    inside them. Idempotent; rewritten at every start, so rotating a secret is edit ``.env`` + restart."""
    check_secrets(env)
    tls = ensure_server_tls(setup.pki, hosts=BROKER_HOSTS)

    setup.ca.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tls.ca_cert, setup.ca / "ca.crt")
    (setup.ca / "ca.crt").chmod(0o644)

    mosq = setup.mosquitto
    (mosq / "tls").mkdir(parents=True, exist_ok=True)
    (mosq / "health").mkdir(parents=True, exist_ok=True)
    for source, name in ((tls.ca_cert, "ca.crt"), (tls.cert, "server.crt"), (tls.key, "server.key")):
        write_private(mosq / "tls" / name, source.read_text())
    # Derived, not random: setup runs at every `compose up` while a running broker keeps the identities it
    # read at its start, so the healthcheck's password must stay what that broker knows ("$" is in no device id).
    health_password = device_password(settings.secrets.mqtt_device_secret, f"${HEALTH_USER}").reveal()
    write_private(mosq / "dynamic-security.json", render_health_identity(
        render_identities(MosquittoOptions.from_settings(settings)), health_password))
    write_private(mosq / "health" / "mosquitto_sub", render_mosquitto_sub_options(
        password=health_password, ca_file=servers.mosquitto / "tls" / "ca.crt"))

    kafka = setup.kafka
    kafka.mkdir(parents=True, exist_ok=True)
    setup.kafka_data.mkdir(parents=True, exist_ok=True)
    published = env.get("APT_ENERGY_COMPOSE_KAFKA_PORT", "")
    if published and not published.isdigit():
        raise ConfigError(f"APT_ENERGY_COMPOSE_KAFKA_PORT: expected a port number, got {published!r}")
    props = render_kafka_properties(settings, log_dir=servers.kafka_data,
                                    advertised_host_port=int(published) if published else None)
    write_private(kafka / "server.properties", props)
    write_private(kafka / "health.properties", render_kafka_client_properties(
        settings, bootstrap=f"kafka:{KAFKA_CLIENT_PORT}"))
    marker = kafka / "formatted-with-scram"
    if (setup.kafka_data / "meta.properties").exists() and not marker.exists():
        # Formatted by an older compose.yaml without users: the first SCRAM user can only be added at format
        # time, so Kafka's storage starts again empty (as the native stack does).
        logger.warning("kafka data in %s predates authentication; emptying it (topics start empty)",
                       setup.kafka_data)
        for child in setup.kafka_data.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    if not (setup.kafka_data / "meta.properties").exists():
        args = storage_format_args(KafkaAdmin.from_settings(settings), cluster_id=new_cluster_id(),
                                   config=servers.kafka / "server.properties")
        write_private(kafka / "format.args", "\n".join(f'"{a}"' for a in args) + "\n")
        write_private(marker, "")
    if chown:
        _chown_tree(mosq, MOSQUITTO_UID)
        _chown_tree(kafka, KAFKA_UID)
        _chown_tree(setup.kafka_data, KAFKA_UID)
    for directory in (mosq, mosq / "tls", mosq / "health", kafka):
        directory.chmod(0o700)
    logger.info("compose setup done identities=%s kafka_formatted=%s", mosq / "dynamic-security.json",
                (setup.kafka_data / "meta.properties").exists())


def _chown_tree(root: Path, uid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)
