"""The container healthchecks' logic (compose.yaml runs them as python -m apt_energy.app.healthcheck)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from apt_energy.app.healthcheck import connected, fresh, main, subscribed

pytestmark = pytest.mark.unit

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def test_an_established_connection_to_the_port_is_found_and_a_listening_one_is_not() -> None:
    established = HEADER + "   0: 0100007F:B1C2 0A590002:22B3 01 00000000:00000000 00:00000000 00000000 10001 0 1\n"
    closing = HEADER + "   0: 0100007F:B1C2 0A590002:22B3 06 00000000:00000000 00:00000000 00000000 10001 0 1\n"
    listening = HEADER + "   0: 00000000:22B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001 0 1\n"
    assert connected(8883, [established])
    assert not connected(8883, [closing, listening])
    assert not connected(1883, [established])


def test_bridge_is_healthy_once_its_stats_say_subscribed(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    assert not subscribed(stats)                       # not written yet
    stats.write_text(json.dumps({"subscribed": False}))
    assert not subscribed(stats)
    stats.write_text(json.dumps({"subscribed": True}))
    assert subscribed(stats) and main(["subscribed", str(stats)]) == 0


def test_a_health_file_counts_only_while_fresh(tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    assert not fresh(alive, 30)
    alive.touch()
    os.utime(alive, (1000.0, 1000.0))
    assert fresh(alive, 30, now=1020.0) and not fresh(alive, 30, now=1031.0)
    assert main(["nonsense"]) == 2
