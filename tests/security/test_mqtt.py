"""Attempts on the broker by someone holding one gateway's credentials, or none: each refused."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.config import Household, Settings
from apt_energy.core.mqtt import MqttLogin, device_password
from apt_energy.core.topics import device_base, reading_topic
from paho.mqtt.reasoncodes import ReasonCode

pytestmark = pytest.mark.integration
NOT_AUTHORIZED = 0x87


@dataclass
class Session:
    client: mqtt.Client
    connack: ReasonCode | None = None
    acks: dict[int, ReasonCode] = field(default_factory=dict)
    granted: list[ReasonCode] = field(default_factory=list)

    def wait(self, check: object, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not check() and time.monotonic() < deadline:  # type: ignore[operator]
            self.client.loop(0.1)


def session(settings: Settings, *, username: str | None, password: str | None, client_id: str,
            tls: ssl.SSLContext | None = None, port: int | None = None) -> Session:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    s = Session(client)
    client.on_connect = lambda _c, _u, _f, rc, _p: setattr(s, "connack", rc)
    client.on_publish = lambda _c, _u, mid, rc, _p: s.acks.__setitem__(mid, rc)
    client.on_subscribe = lambda _c, _u, _mid, rcs, _p: s.granted.extend(rcs)
    if username is not None:
        client.username_pw_set(username, password)
    if tls is not None:
        client.tls_set_context(tls)
    client.connect(settings.mqtt.host, port or settings.mqtt.port, keepalive=10)
    s.wait(lambda: s.connack is not None)
    return s


def as_device(settings: Settings, h: Household, *, client_id: str | None = None) -> Session:
    user, password = MqttLogin.from_settings(settings, "device", device_id=h.device_id).credentials
    return session(settings, username=user, password=password.reveal(), client_id=client_id or h.device_id,
                   tls=ssl.create_default_context(cafile=str(settings.mqtt_ca_file)))


def publish(s: Session, topic: str) -> int:
    info = s.client.publish(topic, b'{"forged":true}', qos=1)
    s.wait(lambda: info.mid in s.acks)
    return s.acks[info.mid].value


def subscribe(s: Session, topic: str) -> int:
    before = len(s.granted)
    s.client.subscribe(topic, qos=1)
    s.wait(lambda: len(s.granted) > before)
    return s.granted[-1].value


@pytest.fixture
def two_households(stack_settings: Settings) -> tuple[Household, Household]:
    households = stack_settings.complex.households()
    return households[0], households[1]


def test_a_device_publishes_its_own_reading(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, _ = two_households
    s = as_device(stack_settings, me)
    assert s.connack is not None and not s.connack.is_failure
    assert publish(s, reading_topic(stack_settings.mqtt.topic_prefix, me, "water")) < 0x80  # success codes


@pytest.mark.parametrize("suffix", ["status", "meta", "electricity/reading"])
def test_a_device_cannot_write_another_households_topics(stack_settings: Settings, two_households,  # type: ignore[no-untyped-def]
                                                         suffix: str) -> None:
    me, neighbour = two_households
    s = as_device(stack_settings, me)
    assert publish(s, f"{device_base(stack_settings.mqtt.topic_prefix, neighbour)}/{suffix}") == NOT_AUTHORIZED


@pytest.mark.parametrize("topic", ["{me}/cmd", "apt/#", "{me}/../x", "junk/topic", "$SYS/broker"])
def test_a_device_cannot_publish_commands_or_outside_its_household(stack_settings: Settings, two_households,  # type: ignore[no-untyped-def]
                                                                   topic: str) -> None:
    me, _ = two_households
    base = device_base(stack_settings.mqtt.topic_prefix, me)
    s = as_device(stack_settings, me)
    if "#" in topic:
        return  # a wildcard is not a publish topic: paho refuses before the broker
    assert publish(s, topic.format(me=base)) == NOT_AUTHORIZED


def test_a_device_cannot_read_another_households_commands(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, neighbour = two_households
    s = as_device(stack_settings, me)
    assert subscribe(s, f"{device_base(stack_settings.mqtt.topic_prefix, neighbour)}/cmd") == NOT_AUTHORIZED
    assert subscribe(s, f"{stack_settings.mqtt.topic_prefix}/#") == NOT_AUTHORIZED
    assert subscribe(s, f"{device_base(stack_settings.mqtt.topic_prefix, me)}/cmd") == 1  # its own: granted QoS 1


def test_a_device_cannot_take_another_devices_client_id(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, neighbour = two_households
    s = as_device(stack_settings, me, client_id=neighbour.device_id)
    assert s.connack is not None and s.connack.is_failure


def test_one_devices_password_opens_no_other_identity(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, neighbour = two_households
    mine = device_password(stack_settings.secrets.mqtt_device_secret, me.device_id).reveal()
    s = session(stack_settings, username=neighbour.device_id, password=mine, client_id=neighbour.device_id,
                tls=ssl.create_default_context(cafile=str(stack_settings.mqtt_ca_file)))
    assert s.connack is not None and s.connack.is_failure


@pytest.mark.parametrize("tls_port", [True, False])
def test_anonymous_and_wrong_password_logins_are_refused(stack_settings: Settings, tls_port: bool) -> None:
    tls = ssl.create_default_context(cafile=str(stack_settings.mqtt_ca_file)) if tls_port else None
    port = stack_settings.mqtt.port if tls_port else stack_settings.mqtt.plain_port
    for username, password in ((None, None), (stack_settings.mqtt.admin_user, "change-me"), ("apt-bridge", "")):
        s = session(stack_settings, username=username, password=password, client_id="", tls=tls, port=port)
        assert s.connack is not None and s.connack.is_failure, (username, port)


def test_the_bridge_reads_and_never_writes(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, _ = two_households
    user, password = MqttLogin.from_settings(stack_settings, "bridge").credentials
    s = session(stack_settings, username=user, password=password.reveal(), client_id="bridge-probe",
                tls=ssl.create_default_context(cafile=str(stack_settings.mqtt_ca_file)))
    assert subscribe(s, f"{stack_settings.mqtt.topic_prefix}/#") == 1
    assert publish(s, reading_topic(stack_settings.mqtt.topic_prefix, me, "water")) == NOT_AUTHORIZED
    assert publish(s, f"{device_base(stack_settings.mqtt.topic_prefix, me)}/cmd") == NOT_AUTHORIZED


def test_the_operator_sends_commands_but_no_readings(stack_settings: Settings, two_households) -> None:  # type: ignore[no-untyped-def]
    me, _ = two_households
    user, password = MqttLogin.from_settings(stack_settings, "operator").credentials
    s = session(stack_settings, username=user, password=password.reveal(), client_id="operator-probe",
                tls=ssl.create_default_context(cafile=str(stack_settings.mqtt_ca_file)))
    assert publish(s, f"{device_base(stack_settings.mqtt.topic_prefix, me)}/cmd") < 0x80
    assert publish(s, reading_topic(stack_settings.mqtt.topic_prefix, me, "water")) == NOT_AUTHORIZED


def test_clients_refuse_a_broker_their_ca_did_not_sign(stack_settings: Settings, tmp_path: Path) -> None:
    from apt_energy.stack.pki import ensure_server_tls

    other = ensure_server_tls(tmp_path / "other-ca")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    admin = MqttLogin.from_settings(stack_settings, "admin").credentials
    client.username_pw_set(*(x if isinstance(x, str) else x.reveal() for x in admin))
    client.tls_set_context(ssl.create_default_context(cafile=str(other.ca_cert)))
    with pytest.raises(ssl.SSLCertVerificationError):
        client.connect(stack_settings.mqtt.host, stack_settings.mqtt.port)


def test_the_login_helper_speaks_tls_with_a_verified_broker(stack_settings: Settings) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
    MqttLogin.from_settings(stack_settings, "admin").apply(client)
    s = Session(client)
    client.on_connect = lambda _c, _u, _f, rc, _p: setattr(s, "connack", rc)
    client.connect(stack_settings.mqtt.host, stack_settings.mqtt.port)
    s.wait(lambda: s.connack is not None)
    assert s.connack is not None and not s.connack.is_failure
    assert isinstance(client.socket(), ssl.SSLSocket)


@pytest.mark.parametrize("meter", ["gas", "electricity2", "x" * 19])
def test_a_device_cannot_keep_retained_topics_under_invented_meter_names(stack_settings: Settings,  # type: ignore[no-untyped-def]
                                                                        two_households, meter: str) -> None:
    # issue 28: `…/+/reading` let a device make the broker keep any number of retained topics forever
    me, _ = two_households
    s = as_device(stack_settings, me)
    info = s.client.publish(f"{device_base(stack_settings.mqtt.topic_prefix, me)}/{meter}/reading", b"{}", qos=1,
                            retain=True)
    s.wait(lambda: info.mid in s.acks)
    assert s.acks[info.mid].value == NOT_AUTHORIZED


def test_a_device_may_publish_the_readings_of_every_configured_meter(stack_settings: Settings,  # type: ignore[no-untyped-def]
                                                                    two_households) -> None:
    me, _ = two_households
    s = as_device(stack_settings, me)
    assert stack_settings.energy
    for meter in stack_settings.energy:
        assert publish(s, reading_topic(stack_settings.mqtt.topic_prefix, me, meter)) < 0x80, meter
