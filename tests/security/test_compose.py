"""docker compose's servers with their compose files, run by the real programs (no Docker engine here).

compose's ``setup`` service code (:func:`apt_energy.stack.compose.setup`) writes its files into a temporary
directory; then the real Mosquitto runs ``config/mosquitto/mosquitto.conf`` (only the mount points, the
plugin's Debian path and the port are rewritten) and a real Kafka 4.1.1 (the stack's jars, the image's
version) is formatted from the same java @argfile and runs the same ``server.properties`` (addresses and
ports for this machine). Every attempt without the right identity is refused.
"""

from __future__ import annotations

import dataclasses
import os
import re
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apt_energy.config import Secret, Settings
from apt_energy.core.errors import ConfigError
from apt_energy.core.kafka import KafkaClient
from apt_energy.core.mqtt import MqttLogin
from apt_energy.core.topics import device_base
from apt_energy.stack.compose import COMPOSE_SECRETS, SERVERS, Paths, render_kafka_properties, setup
from apt_energy.stack.jars import kafka_jars
from apt_energy.stack.kafka import KafkaAdmin, broker_reachable, ensure_principals, ensure_topics, java_binary
from apt_energy.stack.mosquitto import DYNSEC_PLUGIN
from apt_energy.stack.process import port_open, wait_until
from apt_energy.stack.secrets import write_private

from apt_energy import config
from tests.mqtt_helpers import free_port
from tests.security.test_mqtt import NOT_AUTHORIZED, publish, session

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def compose_service(name: str) -> dict[str, Any]:
    """A service as compose.yaml writes it (before interpolation: `$$` is a literal `$`)."""
    return yaml.safe_load((ROOT / "compose.yaml").read_text())["services"][name]  # type: ignore[no-any-return]


def compose_env(settings: Settings) -> dict[str, str]:
    """A user's .env after `apt-energy stack secrets`: this worktree's own values (and Grafana's)."""
    env = {name: f"test-{name.lower()}" for name in COMPOSE_SECRETS}
    for attr, name in settings.secrets.ENV_NAMES.items():
        value = getattr(settings.secrets, attr)
        if name in env and isinstance(value, Secret) and value:
            env[name] = value.reveal()
    return env


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Paths]:
    root = tmp_path_factory.mktemp("compose-volumes")
    paths = Paths(pki=root / "pki", ca=root / "ca", mosquitto=root / "mosquitto", kafka=root / "kafka",
                  kafka_data=root / "kafka-data")
    settings = config.load()
    # As root (the setup container) the files are handed to the servers' users, as compose does.
    setup(settings, env=compose_env(settings), setup=paths, servers=paths, chown=os.geteuid() == 0)
    return settings, paths


# --- setup ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["APT_ENERGY_MQTT_DEVICE_SECRET", "APT_ENERGY_KAFKA_ADMIN_PASSWORD",
                                  "GRAFANA_ADMIN_PASSWORD", "APT_ENERGY_DB_ADMIN_PASSWORD"])
def test_compose_setup_refuses_an_example_value_with_one_line_naming_it(name: str, tmp_path: Path) -> None:
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                   if "=" in line and not line.startswith("#"))
    env = {**os.environ, **compose_env(config.load()), name: example[name]}
    env.pop("APT_ENERGY_CONFIG_DIR", None)
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "apt-energy"), "stack", "compose-setup"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and name in result.stderr, result.stderr
    assert not list(tmp_path.iterdir())   # nothing was written


def test_setup_files_are_private_and_the_ca_key_stays_in_setups_volume(files: tuple[Settings, Paths]) -> None:
    _, paths = files
    for directory in (paths.mosquitto, paths.kafka, paths.pki):
        assert directory.stat().st_mode & 0o077 == 0, directory
        for path in directory.rglob("*"):
            if path.is_file() and path.suffix != ".crt":
                assert path.stat().st_mode & 0o077 == 0, path
    assert (paths.pki / "ca.key").exists()
    assert not list(paths.mosquitto.rglob("ca.key")) and [p.name for p in paths.ca.iterdir()] == ["ca.crt"]
    if os.geteuid() == 0:
        assert {p.stat().st_uid for p in paths.mosquitto.rglob("*")} == {1883}
        assert {p.stat().st_uid for p in paths.kafka.rglob("*")} == {1000}
    text = "\n".join(p.read_text() for p in paths.mosquitto.rglob("*.json"))
    assert all(secret not in text for secret in compose_env(files[0]).values())   # hashes, never passwords


# --- Mosquitto with config/mosquitto/mosquitto.conf ------------------------------------------------------

@pytest.fixture(scope="module")
def broker(files: tuple[Settings, Paths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    settings, paths = files
    work = tmp_path_factory.mktemp("compose-mosquitto")
    (work / "data").mkdir()
    port = free_port()
    conf = (ROOT / "config" / "mosquitto" / "mosquitto.conf").read_text()
    conf = (conf.replace(str(SERVERS.mosquitto), str(paths.mosquitto)).replace("/mosquitto/data/", f"{work}/data/")
            .replace("/usr/lib/mosquitto_dynamic_security.so", DYNSEC_PLUGIN))
    conf = re.sub(r"(?m)^listener 8883$", f"listener {port} 127.0.0.1", conf)
    if os.geteuid() == 0:
        conf += "user root\n"   # the image's entry point hands /mosquitto to its user; here root keeps it
    (work / "mosquitto.conf").write_text(conf)
    log = work / "mosquitto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["mosquitto", "-c", str(work / "mosquitto.conf")], stdout=out, stderr=out)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout=15, what="mosquitto (compose config)",
                   log_file=log, alive=lambda: proc.poll() is None)
        yield dataclasses.replace(settings, mqtt=dataclasses.replace(
            settings.mqtt, host="localhost", port=port, tls=True, ca_file=str(paths.ca / "ca.crt"),
            test_prefix_root=""))
    finally:
        proc.terminate()
        proc.wait(10)


def tls(settings: Settings) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(settings.mqtt_ca_file))


def test_compose_broker_refuses_anonymous_wrong_password_and_plain_connections(broker: Settings) -> None:
    assert session(broker, username=None, password=None, client_id="anon", tls=tls(broker)).connack.value == 135
    h = broker.complex.households()[0]
    assert session(broker, username=h.device_id, password="nope", client_id=h.device_id,
                   tls=tls(broker)).connack.value == 135
    plain = session(broker, username=h.device_id, password="nope", client_id=h.device_id)   # no TLS
    assert plain.connack is None   # the TLS-only listener never answers plain MQTT


def test_compose_broker_gives_each_gateway_its_own_identity(broker: Settings) -> None:
    a, b = broker.complex.households()[:2]
    user, password = MqttLogin.from_settings(broker, "device", device_id=a.device_id).credentials
    own = session(broker, username=user, password=password.reveal(), client_id=a.device_id, tls=tls(broker))
    assert own.connack.value == 0
    assert publish(own, f"{device_base('apt', a)}/status") in (0, 0x10)   # success / no subscribers yet
    assert publish(own, f"{device_base('apt', b)}/status") == NOT_AUTHORIZED
    stolen = session(broker, username=user, password=password.reveal(), client_id=b.device_id, tls=tls(broker))
    assert stolen.connack.value != 0    # client id bound to its identity
    for s in (own, stolen):
        s.client.disconnect()


def test_compose_clients_refuse_a_broker_their_ca_did_not_sign(broker: Settings) -> None:
    other = ssl.create_default_context()    # the system CAs: not the project's
    with pytest.raises(ssl.SSLError):
        session(broker, username="x", password="y", client_id="mitm-probe", tls=other)


def test_the_healthcheck_logs_in_from_its_options_file_and_may_read_only_the_uptime(
        broker: Settings, files: tuple[Settings, Paths]) -> None:
    _, paths = files
    env = {**os.environ, "XDG_CONFIG_HOME": str(paths.mosquitto / "health")}

    test = [a.replace("$$", "$") for a in compose_service("mosquitto")["healthcheck"]["test"]]
    assert test[0] == "CMD" and compose_service("mosquitto")["environment"]["XDG_CONFIG_HOME"] == \
        f"{SERVERS.mosquitto}/health"

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        # -p only because this broker is not on 8883
        return subprocess.run([*argv, "-p", str(broker.mqtt.port)], env=env, capture_output=True, text=True,
                              timeout=20)

    assert run(test[1:]).returncode == 0                      # compose's healthcheck, as written
    other = [a if a != "$SYS/broker/uptime" else "apt/#" for a in test[1:]]
    assert "All subscription requests were denied" in run(other).stderr
    options = (paths.mosquitto / "health" / "mosquitto_sub").read_text()
    assert f"--cafile {SERVERS.mosquitto}/tls/ca.crt" in (options.replace(str(paths.mosquitto), str(SERVERS.mosquitto)))


# --- Kafka with the compose server.properties ------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_kafka(files: tuple[Settings, Paths], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Kafka as compose runs it; its published (``HOST``) listener is at :data:`HOST_LISTENER`."""
    settings, paths = files
    work = tmp_path_factory.mktemp("compose-kafka")
    client_port, host_port, controller_port = free_port(), free_port(), free_port()
    HOST_LISTENER["port"] = host_port
    props = work / "server.properties"
    write_private(props, render_kafka_properties(settings, log_dir=work / "data", host="127.0.0.1",
                                                 bind="127.0.0.1", client_port=client_port, host_port=host_port,
                                                 controller_port=controller_port))
    # the argfile setup wrote for compose, pointed at this properties file (the only path in it)
    args = (paths.kafka / "format.args").read_text().replace(str(paths.kafka / "server.properties"), str(props))
    write_private(work / "format.args", args)
    java, jars = java_binary(), kafka_jars(settings.cache_dir)
    # compose's kafka command, run by sh: format from the argfile on first start, delete it, exec the broker.
    # Only the image's paths change (and kafka-server-start.sh, which the Maven jars do not carry).
    script = compose_service("kafka")["command"][2]
    for image_path, here in (("/etc/kafka/secure", str(work)), ("/var/lib/kafka/data", str(work / "data")),
                             ("/opt/kafka/libs/*", f"{jars}/*"), ("java -cp", f"{java} -cp"),
                             ("/opt/kafka/bin/kafka-server-start.sh", f"{java} -Xmx512m -cp '{jars}/*' kafka.Kafka")):
        assert image_path in script
        script = script.replace(image_path, here)
    log = work / "kafka.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["sh", "-ec", script], stdout=out, stderr=out)
    s = dataclasses.replace(settings, kafka=dataclasses.replace(settings.kafka, bootstrap=f"127.0.0.1:{client_port}"))
    try:
        wait_until(lambda: broker_reachable(KafkaClient.from_settings(s, "admin")), timeout=120,
                   what="kafka (compose config)",
                   log_file=log, alive=lambda: proc.poll() is None)
        assert not (work / "format.args").exists()     # the SCRAM passwords do not stay behind
        yield s
    finally:
        proc.terminate()
        proc.wait(60)


HOST_LISTENER: dict[str, int] = {}


def _reachable(settings: Settings, port: int, *, protocol: str, user: str, password: str) -> bool:
    return broker_reachable(KafkaClient(bootstrap=f"127.0.0.1:{port}", username=user, password=Secret(password),
                                        security_protocol=protocol, mechanism=settings.kafka.sasl_mechanism),
                            timeout_s=5)


def test_compose_kafka_authenticates_every_listener_and_refuses_plaintext(compose_kafka: Settings) -> None:
    admin = KafkaClient.from_settings(compose_kafka, "admin")
    text = render_kafka_properties(compose_kafka, log_dir=Path("/d"))
    assert "PLAINTEXT://" not in text and ":PLAINTEXT" not in text.replace("SASL_PLAINTEXT", "")
    for port in (compose_kafka.kafka.port, HOST_LISTENER["port"]):   # kafka:9092 and the published 29092
        assert _reachable(compose_kafka, port, protocol=admin.security_protocol, user=admin.username,
                          password=admin.password.reveal())
        assert not _reachable(compose_kafka, port, protocol="PLAINTEXT", user="", password="")
        assert not _reachable(compose_kafka, port, protocol=admin.security_protocol, user=admin.username,
                              password="wrong")


def test_compose_init_steps_give_the_pipeline_principals_only_their_acls(compose_kafka: Settings) -> None:
    """``stack init``'s Kafka steps (prepare: ensure_principals, ensure_topics) against the compose broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    ensure_principals(KafkaAdmin.from_settings(compose_kafka))
    ensure_topics(KafkaAdmin.from_settings(compose_kafka))
    bridge = AdminClient(KafkaClient.from_settings(compose_kafka, "bridge").config())
    with pytest.raises(KafkaException):
        bridge.delete_topics([compose_kafka.kafka.readings_topic])[compose_kafka.kafka.readings_topic].result(30)
    admin = AdminClient(KafkaClient.from_settings(compose_kafka, "admin").config())
    assert compose_kafka.kafka.readings_topic in admin.list_topics(timeout=10).topics


def test_stack_init_cli_runs_against_the_native_stack(stack_settings: Settings) -> None:
    """compose's init service command, ``apt-energy stack init``, against real PostgreSQL and Kafka."""
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "apt-energy"), "stack", "init"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-1000:]
    assert result.stdout.startswith("ready:")


def test_compose_setup_is_idempotent_and_does_not_reformat(files: tuple[Settings, Paths]) -> None:
    settings, paths = files
    before = (paths.kafka / "format.args").read_text()
    health = (paths.mosquitto / "health" / "mosquitto_sub").read_text()
    ca = (paths.ca / "ca.crt").read_text()
    (paths.kafka_data / "meta.properties").write_text("formatted\n")   # as the kafka container leaves it
    try:
        setup(settings, env=compose_env(settings), setup=paths, servers=paths, chown=os.geteuid() == 0)
        assert (paths.kafka_data / "meta.properties").exists()          # kept: formatted with SCRAM users
        assert (paths.kafka / "format.args").read_text() == before      # not written again
        # a running broker keeps the identities it started with: the healthcheck's login and the CA stay
        assert (paths.mosquitto / "health" / "mosquitto_sub").read_text() == health
        assert (paths.ca / "ca.crt").read_text() == ca
    finally:
        (paths.kafka_data / "meta.properties").unlink()
    with pytest.raises(ConfigError, match="GRAFANA_ADMIN_PASSWORD"):
        setup(settings, env={**compose_env(settings), "GRAFANA_ADMIN_PASSWORD": ""}, setup=paths, servers=paths)
