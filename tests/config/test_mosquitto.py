"""config/mosquitto (compose's broker): a real Mosquitto started with that config, the ACL and a password
file made by mosquitto_passwd, as the compose service does. The edge fleet and a bridge-user subscriber
log in through apt_energy.mqtt.login."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.config import Secret, Settings
from apt_energy.edge import Fleet, FleetOptions
from apt_energy.stack.process import port_open, wait_until

from apt_energy.topics import device_base
from tests.mqtt_helpers import Recorder, free_port, wait_for

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "config" / "mosquitto"
PASSWORDS = {"edge": "edge-pw", "bridge": "bridge-pw", "operator": "operator-pw"}


@pytest.fixture
def broker(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    port = free_port()
    data = tmp_path / "data"
    data.mkdir()
    passwd = data / "passwd"
    passwd.touch(mode=0o600)
    for user, password in PASSWORDS.items():
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, password], check=True, capture_output=True)
    conf = (CONFIG / "mosquitto.conf").read_text()
    conf = conf.replace("/mosquitto/data/", f"{data}/").replace("/mosquitto/config/acl", str(CONFIG / "acl"))
    conf = re.sub(r"(?m)^listener 1883$", f"listener {port} 127.0.0.1", conf)
    if os.geteuid() == 0:
        conf += "user root\n"  # as the native stack: otherwise Mosquitto drops to a user that cannot read tmp
    (tmp_path / "mosquitto.conf").write_text(conf)
    with open(tmp_path / "mosquitto.log", "wb") as log:
        proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=log, stderr=log)
    try:
        wait_until(lambda: port_open("127.0.0.1", port), timeout=10, what="mosquitto (compose config)",
                   log_file=tmp_path / "mosquitto.log", alive=lambda: proc.poll() is None)
        # compose's broker: role logins without TLS (SECURITY.md, known gaps)
        yield dataclasses.replace(stack_settings, mqtt=dataclasses.replace(stack_settings.mqtt, port=port,
                                                                           topic_prefix="apt", tls=False))
    finally:
        proc.terminate()
        proc.wait(10)


def as_user(settings: Settings, user: str, password: str | None = None) -> Settings:
    secret = Secret(PASSWORDS[user] if password is None else password)
    return dataclasses.replace(settings, mqtt=dataclasses.replace(settings.mqtt, username=user),
                               secrets=dataclasses.replace(settings.secrets, mqtt_password=secret))


def connect_result(settings: Settings, user: str | None, password: str | None) -> int:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{user}", protocol=mqtt.MQTTv5)
    if user is not None:
        client.username_pw_set(user, password)
    done, codes = threading.Event(), []
    client.on_connect = lambda c, u, f, reason, p: (codes.append(reason.value), done.set())
    client.connect("127.0.0.1", settings.mqtt.port)
    client.loop_start()
    done.wait(10)
    client.disconnect()
    client.loop_stop()
    return codes[0]


def test_anonymous_and_wrong_passwords_are_refused(broker: Settings) -> None:
    assert connect_result(broker, None, None) == 135          # Not authorized
    assert connect_result(broker, "edge", "nope") == 135      # (Mosquitto 2.0 says the same for a bad password)
    assert connect_result(broker, "operator", PASSWORDS["operator"]) == 0


def test_edge_fleet_publishes_through_the_acl_and_the_bridge_user_reads_it(broker: Settings, tmp_path: Path) -> None:
    bridge = Recorder(as_user(broker, "bridge"), topic="$share/apt-bridge/apt/#")
    fleet_settings = as_user(broker, "edge")
    start = datetime(2024, 3, 1, tzinfo=UTC)
    Fleet(fleet_settings, fleet_settings.complex.households()[:2], FleetOptions(
        start=start, until=start + timedelta(hours=2), interval_s=3600, state_path=tmp_path / "state.json",
        drain_timeout_s=30)).run()
    wait_for(lambda: sum(len(v) for v in bridge.readings().values()) == 2 * 3 * 2, what="2 devices × 3 meters × 2 h")
    assert len(bridge.last_json("/status")) == 2 and len(bridge.last_json("/meta")) == 2
    bridge.close()


def test_devices_may_not_send_commands_and_operators_may(broker: Settings) -> None:
    household = broker.complex.households()[0]
    cmd = f"{device_base('apt', household)}/cmd"
    device = Recorder(as_user(broker, "edge"), client_id=household.device_id, topic=cmd)

    def publish(user: str, payload: bytes) -> int:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{user}", protocol=mqtt.MQTTv5)
        client.username_pw_set(user, PASSWORDS[user])
        acked, codes = threading.Event(), []
        client.on_publish = lambda c, u, mid, reason, p: (codes.append(reason.value), acked.set())
        client.connect("127.0.0.1", broker.mqtt.port)
        client.loop_start()
        client.publish(cmd, payload, qos=1)
        acked.wait(10)
        client.disconnect()
        client.loop_stop()
        return codes[0]

    assert publish("edge", b'{"cmd": "go_offline"}') == 135         # PUBACK: not authorized
    assert publish("operator", b'{"cmd": "clear"}') == 0
    wait_for(lambda: device.messages.get(cmd) == [b'{"cmd": "clear"}'], what="the operator's command")
    device.close()
