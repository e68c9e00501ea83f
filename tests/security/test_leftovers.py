"""What tests and benchmarks grant or create on the user's stack does not outlive them: the broker's
test-only grants, Kafka ACLs of deleted topics, test databases (real Mosquitto, Kafka, PostgreSQL)."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Callable

import pytest
from apt_energy.config import Settings
from apt_energy.core.topics import device_base
from apt_energy.stack import NativeStack
from apt_energy.stack.kafka import KafkaAdmin, dangling_acl_topics, ensure_acls, prune_acls, topic_acls
from apt_energy.stack.mosquitto import Mosquitto, MosquittoOptions, clear_retained

from tests.conftest import _SESSION_DATABASES, create_database, delete_topics, drop_databases
from tests.security.test_mqtt import NOT_AUTHORIZED, as_device, publish

pytestmark = pytest.mark.integration


def test_the_broker_grants_test_prefixes_only_while_the_tests_run(native_stack: NativeStack) -> None:
    settings = native_stack.settings
    root = settings.mqtt.test_prefix_root
    me = settings.complex.households()[0]
    test_topic = f"{device_base(f'{root}/t{uuid.uuid4().hex[:8]}', me)}/status"
    assert publish(as_device(settings, me), test_topic) < 0x80  # granted during the session
    try:
        # what the session's end does (conftest.leave_as_found), and `stack up` after a killed session
        native_stack.withdraw_test_grants()
        plain = dataclasses.replace(settings, mqtt=dataclasses.replace(settings.mqtt, test_prefix_root=""))
        assert Mosquitto.from_settings(plain).rights_current()
        assert publish(as_device(settings, me), test_topic) == NOT_AUTHORIZED
        assert not native_stack.mosquitto.rights_current()  # so the session's `up` restarts it with them
    finally:
        native_stack.mosquitto.up()
        os.environ["APT_ENERGY_MQTT_TEST_PREFIX_ROOT"] = root
    assert publish(as_device(settings, me), test_topic) < 0x80


def test_stack_up_after_a_killed_session_withdraws_its_grants_and_retained_messages(native_stack: NativeStack) -> None:
    settings = native_stack.settings
    me = settings.complex.households()[0]
    test_topic = f"{device_base(f'{settings.mqtt.test_prefix_root}/t{uuid.uuid4().hex[:8]}', me)}/status"
    device = as_device(settings, me)
    info = device.client.publish(test_topic, b"offline", qos=1, retain=True)  # as a killed session leaves it
    device.wait(lambda: info.mid in device.acks)
    plain = dataclasses.replace(settings, mqtt=dataclasses.replace(settings.mqtt, test_prefix_root=""))
    try:
        Mosquitto.from_settings(plain).up()  # what `apt-energy stack up` does with the user's settings
        assert Mosquitto.from_settings(plain).rights_current()
        assert publish(as_device(settings, me), test_topic) == NOT_AUTHORIZED
        assert clear_retained(MosquittoOptions.from_settings(plain), test_topic, settle_s=0.5) == 0  # already gone
    finally:
        native_stack.mosquitto.up()


def _with_topics(settings: Settings, names: list[str]) -> Settings:
    return dataclasses.replace(settings, kafka=dataclasses.replace(
        settings.kafka, readings_topic=names[0], devices_topic=names[1], dead_letter_topic=names[2]))


def test_a_deleted_test_topic_takes_its_acls_and_stack_up_prunes_dangling_ones(
        native_stack: NativeStack, topic_factory: Callable[..., str]) -> None:
    settings = native_stack.settings
    cluster = KafkaAdmin.from_settings(settings)
    topics = [topic_factory("leftover") for _ in range(3)]
    ensure_acls(KafkaAdmin.from_settings(_with_topics(settings, topics)))
    assert all(topic_acls(cluster, t) for t in topics)
    delete_topics(native_stack, topics)
    assert [topic_acls(cluster, t) for t in topics] == [[], [], []]
    # a run killed before its cleanup: ACLs for topics that were never (or are no longer) there
    ghosts = [f"ghost.{uuid.uuid4().hex[:10]}" for _ in range(3)]
    ensure_acls(KafkaAdmin.from_settings(_with_topics(settings, ghosts)))
    assert set(ghosts) <= set(dangling_acl_topics(cluster))
    prune_acls(cluster)  # Kafka.up does this at every `stack up`
    assert dangling_acl_topics(cluster) == []
    assert [topic_acls(cluster, t) for t in ghosts] == [[], [], []]


def test_the_session_drops_every_test_database_it_made(native_stack: NativeStack) -> None:
    made = create_database(native_stack)
    name = made.postgres.database
    assert name in _SESSION_DATABASES  # dropped at the session's end even if the test that made it fails
    drop_databases(native_stack, [name])
    assert name not in _SESSION_DATABASES
    with native_stack.postgres.admin_connect() as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None
