"""The edge fleet against the real Mosquitto."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from apt_energy.config import Settings
from apt_energy.core.contract import exact
from apt_energy.core.mqtt import MqttLogin
from apt_energy.edge import Fleet, FleetOptions, Ledger

from tests.mqtt_helpers import Recorder, isolated, private_broker, wait_for

pytestmark = pytest.mark.integration

START = datetime(2024, 1, 31, 12, tzinfo=UTC)  # crosses a local month boundary (Feb 1 00:00 KST = 15:00Z)


def run_fleet(settings: Settings, n: int, hours: int, tmp_path: Path, **opts: object) -> Fleet:
    options = FleetOptions(start=START, until=START + timedelta(hours=hours), interval_s=3600,
                           ledger_path=tmp_path / "ledger.json", state_path=tmp_path / "state.json",
                           drain_timeout_s=60, **opts)  # type: ignore[arg-type]
    fleet = Fleet.from_settings(settings, settings.complex.households()[:n], options)
    fleet.run()
    return fleet


def test_every_device_leaves_retained_meta_and_status_and_the_ledger_matches_what_was_received(
        stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    rec = Recorder(settings)
    try:
        fleet = run_fleet(settings, 12, 6, tmp_path)
        assert fleet.drained_at is not None and fleet.started <= fleet.drained_at   # every reading was acked
        wait_for(lambda: sum(len(s) for s in rec.readings().values()) >= 12 * 6 * 3, 20, "all readings")
    finally:
        rec.close()
    ids = {h.device_id for h in settings.complex.households()[:12]}
    # a fresh subscriber (what MQTT Explorer does) sees retained meta and status for every device
    fresh = Recorder(settings)
    try:
        wait_for(lambda: len(fresh.last_json("/meta")) == 12 and len(fresh.last_json("/status")) == 12, 10,
                 "retained meta and status")
        metas = fresh.last_json("/meta")
        statuses = fresh.last_json("/status")
    finally:
        fresh.close()
    assert {m["device_id"] for m in metas.values()} == ids
    assert all({x["meter"] for x in m["meters"]} == {"electricity", "heating", "water"}  # type: ignore[union-attr]
               for m in metas.values())
    assert {s["state"] for s in statuses.values()} == {"offline"}  # clean shutdown says offline itself
    received = rec.readings()
    assert len(received) == 36 and all(sorted(seqs) == list(range(6)) for seqs in received.values())
    assert_ledger_matches(Path(fleet.options.ledger_path), received, settings)  # type: ignore[arg-type]


def assert_ledger_matches(ledger_path: Path, received: dict, settings: Settings) -> None:  # type: ignore[type-arg]
    from apt_energy.core.contract import parse_ts, usage_month

    expected: dict[tuple[str, str, str], tuple[Decimal, int]] = {}
    for (device, meter), seqs in received.items():
        for r in seqs.values():
            key = (device, meter, usage_month(parse_ts(r["ts"]), settings.complex.tz).isoformat())
            total, count = expected.get(key, (Decimal(0), 0))
            expected[key] = (total + exact(r["value"]), count + 1)
    assert Ledger.read(ledger_path) == expected
    assert {k[2] for k in expected} == {"2024-01-01", "2024-02-01"}


def test_broker_restart_mid_run_leaves_no_gap_in_any_seq(stack_settings: Settings, tmp_path: Path) -> None:
    settings, broker = private_broker(isolated(stack_settings), tmp_path)
    rec = Recorder(settings, client_id="edge-restart-recorder")
    try:
        options = FleetOptions(start=START, until=START + timedelta(hours=40), interval_s=3600, speed=3600 * 8,
                               ledger_path=tmp_path / "ledger.json", drain_timeout_s=60)
        fleet = Fleet.from_settings(settings, settings.complex.households()[:10], options)
        thread = threading.Thread(target=fleet.run)
        thread.start()
        wait_for(lambda: fleet.acked > 100, 20, "first readings")
        broker.down()           # SIGTERM: mosquitto saves sessions and queues to disk
        time.sleep(1.0)
        broker.up()
        thread.join(90)
        assert not thread.is_alive()
        wait_for(lambda: sum(len(s) for s in rec.readings().values()) >= 10 * 40 * 3, 30, "every reading")
    finally:
        rec.close()
        broker.down()
    received = rec.readings()
    assert all(sorted(seqs) == list(range(40)) for seqs in received.values()), "a seq is missing"
    assert sum(d.counters.connects for d in fleet.devices) >= 20  # every device reconnected
    assert_ledger_matches(tmp_path / "ledger.json", received, settings)


def test_kill_9_leaves_offline_status_through_the_last_will(stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    env = {**os.environ, "APT_ENERGY_MQTT_TOPIC_PREFIX": settings.mqtt.topic_prefix}
    proc = subprocess.Popen([sys.executable, "-m", "apt_energy.edge", "--households", "5", "--months", "1",
                             "--speed", "60", "--state", str(tmp_path / "state.json")],
                            env=env, stderr=subprocess.DEVNULL)
    rec = Recorder(settings)
    try:
        wait_for(lambda: sum(1 for s in rec.last_json("/status").values() if s["state"] == "online") == 5, 30,
                 "5 devices online")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: all(s["state"] == "offline" for s in rec.last_json("/status").values()), 15,
                 "offline via LWT")
    finally:
        proc.kill()
        rec.close()


def test_seq_and_life_survive_a_restart(stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    first = run_fleet(settings, 2, 3, tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())["devices"]
    assert all(v["seq"] == 3 for d in state.values() for v in d["meters"].values())   # state format 3
    assert {d["life"] for d in state.values()} == {first.devices[0].life} and first.devices[0].life > 0
    rec = Recorder(settings)
    try:
        second = Fleet.from_settings(settings, settings.complex.households()[:2], FleetOptions(
            start=START + timedelta(hours=3), until=START + timedelta(hours=5), interval_s=3600,
            state_path=tmp_path / "state.json"))
        second.run()
        wait_for(lambda: sum(len(s) for s in rec.readings().values()) >= 12, 10, "readings")
    finally:
        rec.close()
    assert all(sorted(s) == [3, 4] for s in rec.readings().values())
    assert {r["life"] for s in rec.readings().values() for r in s.values()} == {first.devices[0].life}


def test_a_lost_state_starts_a_new_life_at_seq_0(stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    first = run_fleet(settings, 1, 2, tmp_path)
    (tmp_path / "state.json").unlink()       # the gateway's state volume is gone
    rec = Recorder(settings)
    try:
        second = run_fleet(settings, 1, 2, tmp_path)
        wait_for(lambda: sum(len(s) for s in rec.readings().values()) >= 6, 10, "readings")
    finally:
        rec.close()
    assert second.devices[0].life > first.devices[0].life
    lives = {(r["life"], r["seq"]) for s in rec.readings().values() for r in s.values()}
    assert lives == {(second.devices[0].life, 0), (second.devices[0].life, 1)}
    # the ledger (continued from the first run) holds both lives' readings apart
    rows = json.loads((tmp_path / "ledger.json").read_text())["rows"]
    assert {r["life"] for r in rows} == {first.devices[0].life, second.devices[0].life}
    assert sum(r["count"] for r in rows) == 2 * 2 * 3


def test_hostile_commands_to_one_device_leave_the_fleet_running(stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    households = settings.complex.households()[:4]
    target = households[1]
    base = f"{settings.mqtt.topic_prefix}/{target.complex_id}/{target.building:02d}/{target.unit_code}"
    options = FleetOptions(start=START, until=START + timedelta(hours=24), interval_s=3600, speed=3600 * 4,
                           ledger_path=tmp_path / "ledger.json", drain_timeout_s=60)
    fleet = Fleet.from_settings(settings, households, options)
    rec = Recorder(settings)
    thread = threading.Thread(target=fleet.run)
    thread.start()
    hostile = [b"[" * 3000 + b"]" * 3000, b'{"a":' * 3000 + b"1" + b"}" * 3000, b"\xff\xfe\x00",
               b'{"inject": "leak", "hours": NaN}', b'{"inject": "leak", "hours": 1e400}',
               b'{"offline": {"hours": ' + b"9" * 400 + b"}}", b'{"inject": "leak", "inject": "overuse"}',
               b"x" * 100_000]
    try:
        wait_for(lambda: all(d.connected for d in fleet.devices), 10, "devices online")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        # whoever holds the operator's login can send any bytes as a command
        MqttLogin.from_settings(settings, "operator").apply(pub)
        pub.connect(settings.mqtt.host, settings.mqtt.port)
        pub.loop_start()
        for bad in hostile:
            pub.publish(f"{base}/cmd", bad, qos=1).wait_for_publish(5)
        wait_for(lambda: fleet.devices[1].counters.bad_commands == len(hostile) or not thread.is_alive(), 20,
                 "hostile commands handled")
        assert thread.is_alive() and all(d.connected for d in fleet.devices)
        pub.loop_stop()
        pub.disconnect()
        thread.join(90)
        assert not thread.is_alive()
        wait_for(lambda: sum(len(s) for s in rec.readings().values()) >= 4 * 24 * 3, 20, "every reading")
    finally:
        fleet.stop()
        thread.join(10)
        rec.close()
    counters = [d.counters for d in fleet.devices]
    assert [c.bad_commands for c in counters] == [0, len(hostile), 0, 0]
    assert all(c.connects == 1 for c in counters)        # nobody was thrown off
    assert fleet.stats().bad_commands == len(hostile)
    received = rec.readings()
    assert len(received) == 12 and all(sorted(seqs) == list(range(24)) for seqs in received.values())
    ledger = Ledger.read(tmp_path / "ledger.json")
    assert sum(n for _, n in ledger.values()) == 4 * 24 * 3


def test_commands_inject_a_leak_and_malformed_ones_are_ignored(stack_settings: Settings, tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    household = settings.complex.households()[0]
    base = f"{settings.mqtt.topic_prefix}/{household.complex_id}/{household.building:02d}/{household.unit_code}"
    options = FleetOptions(start=START, until=START + timedelta(hours=48), interval_s=3600, speed=3600 * 4)
    fleet = Fleet.from_settings(settings, [household], options)
    rec = Recorder(settings)
    thread = threading.Thread(target=fleet.run)
    thread.start()
    try:
        wait_for(lambda: fleet.devices[0].connected, 10, "device online")
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        MqttLogin.from_settings(settings, "operator").apply(pub)  # people send commands as the operator
        pub.connect(settings.mqtt.host, settings.mqtt.port)
        pub.loop_start()
        for bad in (b"garbage", b'{"inject": "flood"}', b"[]"):
            pub.publish(f"{base}/cmd", bad, qos=1).wait_for_publish(5)
        pub.publish(f"{base}/cmd", b'{"inject": "leak", "meter": "water", "hours": 1000, "flow": 0.5}',
                    qos=1).wait_for_publish(5)
        pub.loop_stop()
        thread.join(60)
    finally:
        fleet.stop()
        thread.join(10)
        rec.close()
    assert fleet.devices[0].counters.bad_commands == 3
    assert fleet.devices[0].counters.commands == 1
    water = [r for (d, m), seqs in rec.readings().items() if m == "water" for _, r in sorted(seqs.items())]
    assert len(water) == 48  # it kept publishing through the bad commands
    leaking = [r["value"] for r in water if r["value"] >= 0.5]
    assert len(leaking) >= 10 and water[-1]["value"] >= 0.5  # the leak flows day and night until the end


def test_full_speed_drops_nothing_when_one_device_outruns_its_buffer(stack_settings: Settings,
                                                                    tmp_path: Path) -> None:
    # issue 27: one household at 1 s intervals and --speed 0 generated far faster than one connection sends;
    # the fleet-wide bound let its buffer (10,000) overflow. An hour is 10,800 readings.
    settings = isolated(stack_settings)
    env = {**os.environ, "APT_ENERGY_MQTT_TOPIC_PREFIX": settings.mqtt.topic_prefix}
    out = subprocess.run([sys.executable, "-m", "apt_energy.edge", "--households", "1", "--interval", "1s",
                          "--start", "2024-01-01T00:00:00+09:00", "--until", "2024-01-01T01:00:00+09:00",
                          "--state", str(tmp_path / "state.json"), "--ledger", str(tmp_path / "ledger.json")],
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
    assert "dropped 0" in out.stdout and "sent 10,800" in out.stdout, out.stdout
    assert sum(c for _, c in Ledger.read(tmp_path / "ledger.json").values()) == 10_800


def test_a_retained_command_is_ignored_and_counted_not_executed_at_every_connect(stack_settings: Settings,
                                                                                tmp_path: Path) -> None:
    settings = isolated(stack_settings)
    household = settings.complex.households()[0]
    from apt_energy.app.reset import mqtt_session
    from apt_energy.core import topics

    cmd = f"{topics.device_base(settings.mqtt.topic_prefix, household)}/cmd"
    with mqtt_session(settings, "retained-cmd-test", "admin") as client:
        client.publish(cmd, b'{"set": "interval", "interval_s": 7200}', qos=1, retain=True).wait_for_publish(10)
    try:
        fleet = run_fleet(settings, 1, 4, tmp_path)
    finally:
        with mqtt_session(settings, "retained-cmd-test", "admin") as client:
            client.publish(cmd, b"", qos=1, retain=True).wait_for_publish(10)
    device = fleet.devices[0]
    assert device.counters.retained_commands >= 1 and device.counters.commands == 0
    assert device.interval_s == 3600
    assert fleet.stats().retained_commands >= 1


def test_replace_meter_command_starts_a_new_life_announced_in_retained_meta(stack_settings: Settings,
                                                                            tmp_path: Path) -> None:
    from apt_energy.edge.cli import send_replace

    settings = isolated(stack_settings)
    fleet = Fleet.from_settings(settings, settings.complex.households()[:1], FleetOptions(
        start=START, until=START + timedelta(hours=40), interval_s=3600, speed=3600 * 4,
        ledger_path=tmp_path / "ledger.json", state_path=tmp_path / "state.json", drain_timeout_s=60))
    device = fleet.devices[0]
    old_life = device.registers["water"].life
    rec = Recorder(settings)
    thread = threading.Thread(target=fleet.run)
    thread.start()
    try:
        wait_for(lambda: device.connected and fleet.acked > 10, 20, "first readings")
        send_replace(settings, device.device_id, "water", serial="W-42", total=0.25)
        wait_for(lambda: device.registers["water"].serial == "W-42", 10, "the replace command")
        thread.join(90)
        assert not thread.is_alive()
        wait_for(lambda: len(water_readings(rec)) >= 40, 30, "every water reading")
        fresh = Recorder(settings)
        try:
            wait_for(lambda: len(fresh.last_json("/meta")) == 1, 10, "retained meta")
            (meta,) = fresh.last_json("/meta").values()
        finally:
            fresh.close()
    finally:
        rec.close()
    new_life = device.registers["water"].life
    assert new_life is not None and old_life is not None and new_life > old_life
    water = next(m for m in meta["meters"] if m["meter"] == "water")  # type: ignore[index]
    assert water["life"] == new_life and water["serial"] == "W-42" and "since" in water
    assert all(m["life"] == old_life for m in meta["meters"] if m["meter"] != "water")  # type: ignore[index]
    readings = water_readings(rec)
    new = sorted((r for r in readings if r["life"] == new_life), key=lambda r: r["seq"])
    old = [r for r in readings if r["life"] == old_life]
    assert len(old) + len(new) == 40 and new[0]["seq"] == 0
    assert [r["seq"] for r in new] == list(range(len(new)))
    assert Decimal(str(new[0]["total"])) == Decimal("0.25") + Decimal(str(new[0]["value"]))
    # the ledger holds both lives of the meter, and the state file the new one
    rows = json.loads((tmp_path / "ledger.json").read_text())["rows"]
    assert {r["life"] for r in rows if r["meter"] == "water"} == {old_life, new_life}
    state = json.loads((tmp_path / "state.json").read_text())["devices"][device.device_id]["meters"]["water"]
    assert (state["life"], state["serial"]) == (new_life, "W-42")


def water_readings(rec: Recorder) -> list[dict[str, object]]:
    """Every water reading received, one per (life, seq) (``Recorder.readings`` keys by seq alone)."""
    with rec.lock:
        raw = [json.loads(p) for t, ps in rec.messages.items() if t.endswith("/water/reading") for p in ps]
    return list({(r["life"], r["seq"]): r for r in raw}.values())
