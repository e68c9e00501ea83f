"""compose's setup renderers (stack/compose.py), without servers: what each file says, and that .env.example,
`stack secrets` and compose.yaml name the same secrets."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml
from apt_energy.config import Settings
from apt_energy.core.errors import ConfigError
from apt_energy.stack.compose import (
    COMPOSE_SECRETS,
    HEALTH_USER,
    check_secrets,
    render_health_identity,
    render_kafka_client_properties,
    render_kafka_properties,
    render_mosquitto_sub_options,
)
from apt_energy.stack.secrets import GENERATED

from apt_energy import config

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def settings() -> Settings:
    return config.load(environ={name: f"test-{name.lower()}" for name in COMPOSE_SECRETS}, dotenv=None)


def properties(text: str) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), "a key is set twice"
    return dict(pairs)


def test_compose_kafka_authenticates_every_listener_and_keeps_the_controller_on_loopback() -> None:
    p = properties(render_kafka_properties(settings(), log_dir=Path("/var/lib/kafka/data")))
    protocols = dict(pair.split(":") for pair in p["listener.security.protocol.map"].split(","))
    assert protocols == {"CONTROLLER": "SASL_PLAINTEXT", "CLIENT": "SASL_PLAINTEXT", "HOST": "SASL_PLAINTEXT"}
    assert p["listeners"] == "CLIENT://:9092,HOST://:29092,CONTROLLER://127.0.0.1:9093"
    assert p["advertised.listeners"] == "CLIENT://kafka:9092,HOST://localhost:29092"
    assert p["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert p["allow.everyone.if.no.acl.found"] == "false" and p["super.users"] == "User:apt-admin"
    assert p["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert p["log.dirs"] == "/var/lib/kafka/data"


def test_compose_kafka_refuses_a_plaintext_setting() -> None:
    s = settings()
    plain = dataclasses.replace(s, kafka=dataclasses.replace(s.kafka, security_protocol="PLAINTEXT"))
    with pytest.raises(ConfigError, match="PLAINTEXT"):
        render_kafka_properties(plain, log_dir=Path("/d"))


def test_the_healthcheck_client_file_authenticates_as_the_admin() -> None:
    p = properties(render_kafka_client_properties(settings(), bootstrap="kafka:9092"))
    assert p["security.protocol"] == "SASL_PLAINTEXT" and p["sasl.mechanism"] == "SCRAM-SHA-256"
    assert 'username="apt-admin"' in p["sasl.jaas.config"]


def test_the_health_identity_may_read_the_uptime_and_nothing_else() -> None:
    # '-' and '!' are outside base64's alphabet: the password cannot appear in a hash or salt by chance
    # (a bare "pw" did, in one CI run: the random salt was "...LVpw==")
    password = "not-a-hash!"
    data = json.loads(render_health_identity(json.dumps({"roles": [], "clients": []}), password))
    (role,) = data["roles"]
    assert role["acls"] == [{"acltype": "subscribePattern", "topic": "$SYS/broker/uptime", "priority": 0,
                             "allow": True}]
    (client,) = data["clients"]
    assert client["username"] == HEALTH_USER and password not in json.dumps(client)   # a hash, not the password
    options = render_mosquitto_sub_options(password="pw", ca_file=Path("/mosquitto/secure/tls/ca.crt"))
    assert options.splitlines() == ["-h localhost", "-p 8883", "--cafile /mosquitto/secure/tls/ca.crt",
                                    f"-u {HEALTH_USER}", "-P pw"]


@pytest.mark.parametrize("value", ["", "change-me-admin"])
def test_check_secrets_names_the_variable(value: str) -> None:
    env = {name: "s3cret" for name in COMPOSE_SECRETS} | {"APT_ENERGY_DB_ADMIN_PASSWORD": value}
    with pytest.raises(ConfigError, match="APT_ENERGY_DB_ADMIN_PASSWORD") as exc:
        check_secrets(env)
    assert "\n" not in str(exc.value)


def test_env_example_stack_secrets_and_compose_name_the_same_secrets() -> None:
    example = set(re.findall(r"(?m)^(\w+)=change-me", (ROOT / ".env.example").read_text()))
    assert example == set(GENERATED)                     # `stack secrets` fills every placeholder
    assert set(COMPOSE_SECRETS) <= example               # compose uses no secret .env.example lacks
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    used = set(re.findall(r"\$\{(\w+):\?", json.dumps(compose)))
    assert used == set(COMPOSE_SECRETS)
