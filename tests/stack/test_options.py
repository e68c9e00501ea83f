"""The stack's option doors: each service holds the secrets it hands its server, and no other."""

from __future__ import annotations

import dataclasses

import pytest
from apt_energy.config import Secret
from apt_energy.config.settings import Secrets
from apt_energy.core.errors import ConfigError
from apt_energy.stack.kafka import KafkaAdmin
from apt_energy.stack.mosquitto import MosquittoOptions
from apt_energy.stack.native import StackOptions
from apt_energy.stack.postgres import DatabaseLogins

from apt_energy import config

pytestmark = pytest.mark.unit

ENV = {env: f"s3cret-{name}" for name, env in Secrets.ENV_NAMES.items() if name != "slack_base_url"}
SETTINGS = config.load(environ=ENV, dotenv=None)


def secrets_in(options: object) -> set[str]:
    """Every Secret among ``options``' fields, walked through nested option objects and dicts."""
    found: set[str] = set()
    values = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else options  # type: ignore[arg-type]

    def walk(value: object) -> None:
        if isinstance(value, Secret):
            found.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(values)
    return found


def test_each_service_holds_only_the_secrets_it_hands_its_server() -> None:
    mqtt = {f"s3cret-{n}" for n in ("mqtt_device_secret", "mqtt_bridge_password", "mqtt_operator_password",
                                    "mqtt_admin_password")}
    kafka = {f"s3cret-{n}" for n in ("kafka_admin_password", "kafka_bridge_password", "kafka_spark_password")}
    database = {f"s3cret-{n}" for n in ("db_owner_password", "db_password", "db_reader_password")}
    assert secrets_in(MosquittoOptions.from_settings(SETTINGS)) == mqtt
    assert secrets_in(KafkaAdmin.from_settings(SETTINGS)) == kafka
    assert secrets_in(DatabaseLogins.from_settings(SETTINGS)) == database
    # the whole stack: every server's, but never Slack's
    assert secrets_in(StackOptions.from_settings(SETTINGS)) == mqtt | kafka | database


def test_a_missing_kafka_password_fails_when_its_client_is_needed_not_at_the_door() -> None:
    cluster = KafkaAdmin.from_settings(config.load(environ={}, dotenv=None))   # `stack status` needs none
    with pytest.raises(ConfigError, match="APT_ENERGY_KAFKA_ADMIN_PASSWORD"):
        cluster.client()
