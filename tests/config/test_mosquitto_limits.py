"""The broker's limits agree with the bridge's: both brokers (native stack, compose) refuse the same payload
size, the bridge's own limit is below it, and both save and bound their state with the same settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apt_energy.bridge import BridgeOptions
from apt_energy.bridge.routing import MESSAGE_SIZE_LIMIT
from apt_energy.config import Settings
from apt_energy.core.errors import ConfigError
from apt_energy.stack.mosquitto import (
    AUTOSAVE_S,
    MAX_QUEUED_MESSAGES,
    PERSISTENT_CLIENT_EXPIRATION,
    render_config,
)
from apt_energy.stack.pki import ServerTls

from apt_energy import config

pytestmark = pytest.mark.unit

COMPOSE_CONF = Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "mosquitto.conf"


def options(text: str) -> dict[str, str]:
    return dict(re.findall(r"(?m)^(\w+) (.+)$", text))


NATIVE = render_config(port=8883, plain_port=1883, data_dir=Path("/d"), dynsec_file=Path("/d/identities.json"),
                       tls=ServerTls(Path("/t/ca.crt"), Path("/t/server.crt"), Path("/t/server.key")))


@pytest.mark.parametrize("conf", [COMPOSE_CONF.read_text(), NATIVE], ids=["compose", "native"])
def test_both_brokers_refuse_payloads_over_the_limit_and_bound_their_state_alike(conf: str) -> None:
    # issue 27: the save interval and the queue limits were changed on purpose (measured, see AUTOSAVE_S)
    o = options(conf)
    assert int(o["message_size_limit"]) == MESSAGE_SIZE_LIMIT
    assert o["persistence"] == "true" and int(o["autosave_interval"]) == AUTOSAVE_S
    assert int(o["max_queued_messages"]) == MAX_QUEUED_MESSAGES
    assert o["persistent_client_expiration"] == PERSISTENT_CLIENT_EXPIRATION


def test_the_bridge_limit_is_below_the_brokers_and_a_reading_is_far_below_the_bridges() -> None:
    s: Settings = config.load()
    assert 1024 <= s.bridge.max_payload_bytes <= MESSAGE_SIZE_LIMIT
    assert not s.bridge.shared_subscription        # the default survives a broker restart
    with pytest.raises(ConfigError, match="max_payload_bytes"):
        BridgeOptions(max_payload_bytes=MESSAGE_SIZE_LIMIT + 1)
