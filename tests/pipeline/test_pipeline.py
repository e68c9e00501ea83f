"""``apt-energy pipeline``: which services it runs, and up → kill -9 → restart → status → down for real."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from apt_energy.app.pipeline import PipelineOptions, service_specs
from apt_energy.app.supervise import read_state
from apt_energy.bridge.bridge import part_client_id
from apt_energy.bridge.partition import Part
from apt_energy.config import Household, Settings
from apt_energy.stack.process import alive

from tests.conftest import env_for


@pytest.mark.unit
def test_one_bridge_uses_the_configured_client_id_and_the_notifier_runs_on_its_own(tmp_path: Path) -> None:
    specs = {s.name: s for s in service_specs(PipelineOptions(directory=tmp_path), python="py")}
    assert list(specs) == ["spark", "bridge", "notifier"]
    assert specs["spark"].argv == ("py", "-m", "apt_energy.spark", "--no-notifier")
    assert "--client-id" not in specs["bridge"].argv
    assert specs["bridge"].log_file == tmp_path / "bridge.log"


@pytest.mark.unit
def test_pipeline_status_json_lists_the_recorded_services_for_scripts(tmp_path: Path) -> None:
    from apt_energy.app.supervise import ServiceRecord, write_state

    write_state(tmp_path / "state.json", None, [ServiceRecord("bridge", str(tmp_path / "bridge.log"), ["py"],
                                                              state="stopped", restarts=2, last_exit="exit 1")])
    result = subprocess.run([sys.executable, "-m", "apt_energy", "pipeline", "status", "--json", "--dir",
                             str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr       # no supervisor running: the same code as the table's
    data = json.loads(result.stdout)
    assert data["running"] is False and data["supervisor_pid"] is None
    assert data["services"] == [{"name": "bridge", "pid": None, "state": "stopped", "restarts": 2, "started_at": None,
                                 "last_exit": "exit 1", "log": str(tmp_path / "bridge.log"), "note": None}]


@pytest.mark.unit
def test_several_bridges_each_run_their_own_part_with_distinct_client_ids_stats_and_logs(tmp_path: Path) -> None:
    specs = service_specs(PipelineOptions(directory=tmp_path, bridges=2, bridge_client_id="b", notifier=False,
                                          spark=False), python="py")
    assert [s.name for s in specs] == ["bridge-1", "bridge-2"]
    assert [s.argv[s.argv.index("--part") + 1] for s in specs] == ["0/2", "1/2"]
    parts = [Part.parse(s.argv[s.argv.index("--part") + 1]) for s in specs]
    client_ids = [part_client_id(s.argv[s.argv.index("--client-id") + 1], p) for s, p in zip(specs, parts, strict=True)]
    assert client_ids == ["b-0of2", "b-1of2"]
    assert len({s.argv[s.argv.index("--stats-file") + 1] for s in specs}) == 2
    assert len({s.log_file for s in specs}) == 2


def pipeline(action: str, directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apt_energy", "pipeline", action, "--dir", str(directory),
                           "--stop-timeout", "30"], env=env, capture_output=True, text=True, timeout=120, check=False)


def row(out: str, service: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [service])


@pytest.mark.integration
def test_pipeline_restarts_a_killed_bridge_and_down_stops_everything(pipeline_settings: Settings,
                                                                     tmp_path: Path) -> None:
    env = {**env_for(pipeline_settings), "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoints")}
    d = tmp_path / "pipeline"
    try:
        first = pipeline("up", d, env)
        assert first.returncode == 0, first.stdout + first.stderr
        again = pipeline("up", d, env)  # safe to call twice: the running supervisor answers
        assert "pipeline already running" in again.stdout
        _, records = read_state(d / "state.json")
        pids = {r.name: r.pid for r in records}
        assert set(pids) == {"spark", "bridge", "notifier"} and all(pids.values())
        supervisor = int((d / "supervisor.pid").read_text())

        os.kill(pids["bridge"], signal.SIGKILL)
        (d / "bridge-stats.json").unlink(missing_ok=True)  # so the file below is the new bridge's
        for _ in range(300):
            _, records = read_state(d / "state.json")
            bridge = next(r for r in records if r.name == "bridge")
            if bridge.restarts == 1 and bridge.state == "running":
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert bridge.pid not in (None, pids["bridge"])
        status = pipeline("status", d, env)
        assert status.returncode == 0, status.stdout + status.stderr
        assert row(status.stdout, "bridge")[2:4] == ["running", "1"]
        assert row(status.stdout, "bridge")[-3:] == ["signal", "9", "(SIGKILL)"]
        assert row(status.stdout, "spark")[2:4] == ["running", "0"]
        # the new bridge works: it subscribes again and writes its stats
        for _ in range(300):
            stats = d / "bridge-stats.json"
            if stats.exists() and json.loads(stats.read_text()).get("subscribed"):
                break
            subprocess.run(["sleep", "0.1"], check=True)
        assert json.loads((d / "bridge-stats.json").read_text())["subscribed"]
    finally:
        stopped = pipeline("down", d, env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "supervisor: not running" in stopped.stdout
    assert not alive(supervisor)
    assert not any(alive(p) for p in [*pids.values(), bridge.pid] if p)
    assert {r.state for r in read_state(d / "state.json")[1]} == {"stopped"}
    assert pipeline("status", d, env).returncode == 3


@pytest.mark.integration
def test_down_stops_the_services_of_a_supervisor_that_was_killed(pipeline_settings: Settings,
                                                                  tmp_path: Path) -> None:
    env = env_for(pipeline_settings)
    d = tmp_path / "pipeline"
    up = subprocess.run([sys.executable, "-m", "apt_energy", "pipeline", "up", "--dir", str(d), "--no-spark"],
                        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    pids = [r.pid for r in read_state(d / "state.json")[1]]
    os.kill(int((d / "supervisor.pid").read_text()), signal.SIGKILL)
    assert pipeline("status", d, env).returncode == 3   # the supervisor is gone ...
    assert all(p and alive(p) for p in pids)             # ... its children are not
    stopped = pipeline("down", d, env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not any(alive(p) for p in pids if p)
    assert {r.state for r in read_state(d / "state.json")[1]} == {"stopped"}


@pytest.mark.integration
def test_two_bridges_under_the_pipeline_forward_every_building_exactly_once(pipeline_settings: Settings,
                                                                             tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from apt_energy.app.pipeline import down, up, wait_bridges_subscribed
    from apt_energy.app.reset import forget_bridge_session, mqtt_session
    from apt_energy.core.contract import Reading
    from apt_energy.core.kafka import KafkaClient
    from apt_energy.core.topics import reading_topic
    from confluent_kafka import Consumer

    s = pipeline_settings
    options = PipelineOptions(directory=tmp_path / "pipeline", bridges=2, bridge_client_id=s.bridge.client_id,
                              spark=False, notifier=False, stop_timeout_s=30)
    buildings: dict[int, Household] = {}
    for h in s.complex.households():
        buildings.setdefault(h.building, h)
    households = list(buildings.values())[:4]      # buildings 1-4: parts 0, 1, 0, 1
    try:
        up(options, env=env_for(s))
        wait_bridges_subscribed(options, timeout_s=120)
        with mqtt_session(s, f"pub-{s.bridge.client_id}", "admin") as client:
            for h in households:
                reading = Reading(h.device_id, "electricity", 1, datetime(2024, 1, 1, tzinfo=UTC), 3600, 0.5, 0.5,
                                  "kWh")
                client.publish(reading_topic(s.mqtt.topic_prefix, h, "electricity"), reading.to_json(),
                               qos=1).wait_for_publish(10)
        consumer = Consumer(KafkaClient.from_settings(s, "admin").config(**{"group.id": f"g-{s.bridge.client_id}",
                                                                "auto.offset.reset": "earliest"}))
        consumer.subscribe([s.kafka.readings_topic])
        keys: list[bytes] = []
        try:
            quiet = 0
            for _ in range(120):   # until all arrived, then 5 s more for a duplicate
                msg = consumer.poll(1.0)
                if msg is not None and not msg.error():
                    keys.append(msg.key() or b"")
                elif len(keys) >= len(households):
                    quiet += 1
                    if quiet >= 5:
                        break
        finally:
            consumer.close()
        assert sorted(keys) == sorted(h.device_id.encode() for h in households)
        stats = [json.loads((options.directory / f"bridge-{i}-stats.json").read_text()) for i in (1, 2)]
        assert all(st["forwarded"] >= 1 for st in stats), stats   # both parts carried buildings
    finally:
        down(options.directory, timeout_s=30)
        for i in range(2):
            forget_bridge_session(dataclasses.replace(s, bridge=dataclasses.replace(
                s.bridge, client_id=part_client_id(s.bridge.client_id, Part(i, 2)))))
