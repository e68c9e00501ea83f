"""Login doors: each identity gets its own section and its one secret, never the settings tree."""

from __future__ import annotations

import pytest
from apt_energy.config import Secret
from apt_energy.config.settings import KafkaSettings, Secrets
from apt_energy.core.errors import ConfigError
from apt_energy.core.kafka import KafkaClient, kafka_client
from apt_energy.core.mqtt import DeviceLogins, MqttLogin, device_password

from apt_energy import config

pytestmark = pytest.mark.unit

ENV = {env: f"s3cret-{name}" for name, env in Secrets.ENV_NAMES.items() if name != "slack_base_url"}
SETTINGS = config.load(environ={**ENV, "APT_ENERGY_MQTT_TLS": "false"}, dotenv=None)


def test_a_role_login_carries_its_user_and_only_its_own_secret() -> None:
    bridge = MqttLogin.from_settings(SETTINGS, "bridge")
    assert bridge.credentials == (SETTINGS.mqtt.bridge_user, "s3cret-mqtt_bridge_password")
    assert bridge.ca_file is None                                  # mqtt.tls false: no CA to verify with
    assert "s3cret" not in repr(bridge)                            # masked like every Secret


def test_a_device_login_is_derived_for_its_own_id_and_needs_the_fleet_secret() -> None:
    logins = DeviceLogins.from_settings(SETTINGS)
    a, b = logins.for_device("hanbit-101-0101"), logins.for_device("hanbit-101-0102")
    assert a is not None and b is not None
    assert a.credentials == ("hanbit-101-0101", device_password(Secret("s3cret-mqtt_device_secret"), a.username))
    assert a.password != b.password and "s3cret-mqtt_device_secret" not in a.password
    assert a == MqttLogin.from_settings(SETTINGS, "device", device_id="hanbit-101-0101")
    assert DeviceLogins(Secret(""), None).for_device("hanbit-101-0101") is None


def test_a_role_without_its_secret_fails_at_the_door_naming_the_variable() -> None:
    bare = config.load(environ={}, dotenv=None)
    with pytest.raises(ConfigError, match="APT_ENERGY_MQTT_OPERATOR_PASSWORD"):
        MqttLogin.from_settings(bare, "operator")


def test_a_kafka_client_comes_from_the_section_and_one_password() -> None:
    section = KafkaSettings(bootstrap="h:9100")
    spark = kafka_client(section, "spark", Secret("pw"), brokers=2)
    assert (spark.username, spark.password, spark.bootstrap) == (section.spark_user, "pw", "h:9100,h:9102")
    assert KafkaClient.from_settings(SETTINGS, "bridge") == kafka_client(
        SETTINGS.kafka, "bridge", Secret("s3cret-kafka_bridge_password"), brokers=SETTINGS.stack.kafka_brokers)
    with pytest.raises(ConfigError, match="APT_ENERGY_KAFKA_ADMIN_PASSWORD"):
        kafka_client(section, "admin", Secret(""))

