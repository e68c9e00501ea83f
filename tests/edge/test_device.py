from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from apt_energy.core.contract import exact
from apt_energy.core.errors import ConfigError
from apt_energy.edge.device import Backoff, Device, DeviceOptions, Register

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def device(**kw: object) -> Device:
    args: dict[str, object] = dict(base_interval_s=3600, buffer_limit=100, sim_clock=lambda: T0)
    args.update(kw)
    return Device(SETTINGS.complex.households()[0], DeviceOptions.from_settings(SETTINGS), **args)  # type: ignore[arg-type]


def test_tick_makes_one_reading_per_meter_with_increasing_seq_and_exact_totals() -> None:
    d = device(registers={m: Register(seq=41, total_units=5000) for m in SETTINGS.energy})
    d.tick(T0 + timedelta(hours=1), np.array([0.5, 1.25, 0.0123]))
    d.tick(T0 + timedelta(hours=2), np.array([0.25, 1.0, 0.0001]))
    readings = list(d.buffer)
    water = [r for r in readings if r.meter == "water"]
    assert [r.seq for r in water] == [41, 42]
    assert exact(water[1].total) == Decimal("0.5") + Decimal("0.0123") + Decimal("0.0001")
    assert {r.meter for r in readings} == set(SETTINGS.energy)
    assert readings[0].ts == T0 + timedelta(hours=1) and readings[0].interval_s == 3600


def test_full_buffer_drops_the_oldest_and_counts() -> None:
    d = device(buffer_limit=4)
    for h in range(1, 4):
        d.tick(T0 + timedelta(hours=h), np.array([1.0, 1.0, 1.0]))
    assert len(d.buffer) == 4 and d.counters.dropped == 5
    assert [r.seq for r in d.buffer] == [1, 2, 2, 2]  # the last readings are kept, in order


def test_injected_leak_adds_flow_until_it_ends_and_malformed_commands_are_ignored() -> None:
    d = device()
    d.handle_command(b"{not json", T0)
    d.handle_command(b'{"inject": "leak", "meter": "water", "hours": 2, "flow": 0.5}', T0)
    assert d.counters.bad_commands == 1 and d.counters.commands == 1
    for h in range(1, 5):
        d.tick(T0 + timedelta(hours=h), np.array([0.0, 0.0, 0.0]))
    water = [r.value for r in d.buffer if r.meter == "water"]
    assert water == [0.5, 0.5, 0.0, 0.0]


def test_set_interval_aggregates_fleet_ticks() -> None:
    d = device()
    d.handle_command(b'{"set": "interval", "interval_s": 10800}', T0)
    for h in range(1, 7):
        d.tick(T0 + timedelta(hours=h), np.array([1.0, 2.0, 0.001]))
    elec = [r for r in d.buffer if r.meter == "electricity"]
    assert [(r.value, r.interval_s, r.ts.hour) for r in elec] == [(3.0, 10800, 3), (3.0, 10800, 6)]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    b = Backoff(base_s=1, cap_s=8, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    assert all(0.5 <= delays[0] <= 1 for _ in [0]) and max(delays) <= 8
    assert delays[5] >= 4  # capped at 8, jittered within [cap/2, cap]
    b.reset()
    assert b.next_delay() <= 1


def test_every_reading_carries_the_device_life() -> None:
    d = device(life=1_700_000_000_123)
    d.tick(T0 + timedelta(hours=1), np.array([0.5, 1.25, 0.0123]))
    assert {r.life for r in d.buffer} == {1_700_000_000_123}
    assert all(b'"life":1700000000123' in r.to_json() for r in d.buffer)


def test_hostile_commands_are_counted_by_the_device_and_never_raise() -> None:
    d = device()
    for payload in (b"[" * 3000 + b"]" * 3000, b"\xff\xfe", b'{"inject": "leak", "hours": 1e400}', b"x" * 100_000):
        d.handle_command(payload, T0)
    assert d.counters.bad_commands == 4 and d.counters.commands == 0


def test_replace_starts_the_meter_over_in_a_new_life_and_leaves_the_others() -> None:
    d = device(life=1_700_000_000_123, registers={m: Register(seq=5, total_units=9000) for m in SETTINGS.energy})
    d.tick(T0 + timedelta(hours=1), np.array([0.5, 1.25, 0.0123]))
    d.handle_command(b'{"replace": "water", "serial": "W-7", "total": 0.5}', T0 + timedelta(hours=1))
    d.tick(T0 + timedelta(hours=2), np.array([0.5, 1.25, 0.0123]))
    water = [r for r in d.buffer if r.meter == "water"]
    assert [(r.life, r.seq) for r in water] == [(1_700_000_000_123, 5), (d.registers["water"].life, 0)]
    assert d.registers["water"].life > 1_700_000_000_123  # type: ignore[operator]
    assert exact(water[1].total) == Decimal("0.5") + Decimal("0.0123")
    heat = [r for r in d.buffer if r.meter == "heating"]
    assert [(r.life, r.seq) for r in heat] == [(1_700_000_000_123, 5), (1_700_000_000_123, 6)]
    meters = {m.meter: m for m in d.meta().meters}
    assert (meters["water"].serial, meters["water"].since) == ("W-7", T0 + timedelta(hours=1))
    assert meters["heating"].life == 1_700_000_000_123 and meters["heating"].serial is None


def test_a_checkpoint_of_a_device_restores_its_commands_and_partial_interval() -> None:
    d = device()
    d.handle_command(b'{"set": "interval", "interval_s": 10800}', T0)
    d.handle_command(b'{"inject": "leak", "meter": "water", "hours": 5, "flow": 0.5}', T0)
    d.tick(T0 + timedelta(hours=1), np.array([1.0, 2.0, 0.001]))
    saved = d.saved()
    again = device()
    again.restore(saved)
    for dev in (d, again):
        for h in (2, 3):
            dev.tick(T0 + timedelta(hours=h), np.array([1.0, 2.0, 0.001]))
    assert [(r.meter, r.value, r.interval_s) for r in again.buffer] == [
        (r.meter, r.value, r.interval_s) for r in d.buffer]
    assert len(d.buffer) == 3


def test_a_device_without_a_login_fails_at_its_first_connect_naming_the_fleet_secret() -> None:
    d = device()   # built without one: the consumption model needs no broker secrets
    with pytest.raises(ConfigError, match="APT_ENERGY_MQTT_DEVICE_SECRET"):
        d.log_in()
