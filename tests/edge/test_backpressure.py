"""The fleet's clock waits per device (issue 27): a device's buffer never overflows while it could send."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from apt_energy.core.errors import ConfigError
from apt_energy.edge import Fleet, FleetOptions

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
START = datetime(2024, 1, 1, tzinfo=UTC)


def fleet(speed: float = 0.0, buffer: int = 10) -> Fleet:
    return Fleet.from_settings(SETTINGS, SETTINGS.complex.households()[:2], FleetOptions(
        start=START, until=START + timedelta(days=1), interval_s=3600, speed=speed, buffer_limit=buffer))


def run_clock(f: Fleet, passes: int = 50) -> None:
    for _ in range(passes):
        if f._tick_due(time.monotonic() + 1e9):
            f._tick()


def test_at_full_speed_the_clock_waits_for_the_fullest_buffer_not_for_the_fleet() -> None:
    f = fleet()
    assert f.max_pending > 10 * len(f.devices)      # the fleet-wide bound alone would let the buffers overflow
    run_clock(f)
    assert f.dropped == 0 and all(len(d.buffer) == 9 for d in f.devices)   # 3 intervals of 3 meters
    f.devices[0].buffer.clear()                     # one device sent its readings; the other still holds the clock
    f.acked += 9
    run_clock(f)
    assert f.dropped == 0 and len(f.devices[1].buffer) == 9


def test_a_simulated_outage_and_an_unreachable_broker_at_a_set_speed_keep_measuring_and_count_drops() -> None:
    f = fleet()
    f.devices[0].offline_until = START + timedelta(days=2)     # offline on purpose: it does not hold the clock
    f.devices[1].buffer.clear()
    f.devices[1].offline_until = START + timedelta(days=2)
    run_clock(f)
    assert f.sim_time == START + timedelta(days=1) and f.dropped == 2 * (24 * 3 - 10)
    g = fleet(speed=3600.0)                                   # at a set speed a device without the broker measures on
    run_clock(g)
    assert g.sim_time == START + timedelta(days=1) and g.stats().dropped == 2 * (24 * 3 - 10)


@pytest.mark.parametrize("speed", [-5.0, float("nan"), float("inf")])
def test_a_negative_or_non_finite_speed_is_refused(speed: float) -> None:
    with pytest.raises(ConfigError, match="speed must be 0"):
        FleetOptions(start=START, until=START + timedelta(days=1), speed=speed)
