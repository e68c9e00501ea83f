"""Retired bridge sessions are removed: a part layout that changed leaves no session queueing forever."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.app.pipeline import PipelineOptions, bridge_client_ids, retire_bridge_sessions
from apt_energy.bridge import end_session, mqtt_options
from apt_energy.config import Settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@pytest.mark.unit
def test_a_new_layout_retires_exactly_the_old_layouts_client_ids(tmp_path: Path) -> None:
    ended: list[str] = []

    def end(client_id: str) -> bool:
        ended.append(client_id)
        return client_id != "b-1of2"           # one broker refusal: kept for the next `up`

    two = PipelineOptions(directory=tmp_path, bridges=2, bridge_client_id="b")
    assert bridge_client_ids(two) == ["b-0of2", "b-1of2"]
    assert retire_bridge_sessions(two, end) == [] and ended == []          # first run: nothing known before
    assert retire_bridge_sessions(two, end) == [] and ended == []          # same layout: nothing retired
    three = PipelineOptions(directory=tmp_path, bridges=3, bridge_client_id="b")
    assert retire_bridge_sessions(three, end) == ["b-0of2"] and ended == ["b-0of2", "b-1of2"]
    one = PipelineOptions(directory=tmp_path, bridges=1, bridge_client_id="b")
    ended.clear()
    assert retire_bridge_sessions(one, end) == ["b-0of3", "b-1of3", "b-2of3"]
    assert ended == ["b-0of3", "b-1of3", "b-2of3", "b-1of2"]               # the refused one is tried again


def _session(settings: Settings, client_id: str, *, clean: bool) -> tuple[mqtt.Client, bool]:
    """Connect as the bridge; returns the client and whether the broker had a session for it."""
    o = mqtt_options(settings)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(o.username, o.password)
    if o.tls is not None:
        c.tls_set_context(o.tls)
    present: list[bool] = []
    c.on_connect = lambda client, userdata, flags, reason, props: present.append(bool(flags.session_present))
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    c.connect(o.host, o.port, clean_start=clean, properties=props)
    deadline = time.monotonic() + 10
    while not present and time.monotonic() < deadline:
        c.loop(timeout=0.1)
    assert present, "no CONNACK"
    return c, present[0]


@pytest.mark.integration
def test_end_session_removes_a_persistent_bridge_session_from_the_real_broker(pipeline_settings: Settings) -> None:
    client_id = f"{pipeline_settings.bridge.client_id}-{uuid.uuid4().hex[:6]}-0of2"
    c, _ = _session(pipeline_settings, client_id, clean=True)
    c.subscribe(f"{pipeline_settings.mqtt.topic_prefix}/#", qos=1)
    c.loop(timeout=0.5)
    c.disconnect()
    again, present = _session(pipeline_settings, client_id, clean=False)
    again.disconnect()
    assert present                                  # the broker keeps it: it would queue for an hour
    assert end_session(mqtt_options(pipeline_settings), client_id)
    after, present = _session(pipeline_settings, client_id, clean=False)
    assert not present
    # leave nothing behind: end the session this check just created
    after.disconnect()
    assert end_session(mqtt_options(pipeline_settings), client_id)
