"""The monitoring files hold together, and the real Prometheus (Debian's package) scrapes a real bridge on the
native stack: its counters, the broker's queue depth ($SYS) and the alert rules arrive as the generator wrote them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from apt_energy.config import Settings
from apt_energy.dashboards import health
from apt_energy.stack.mosquitto import MAX_QUEUED_MESSAGES

from apt_energy import config
from tests.bridge.support import fleet_of, spread
from tests.conftest import env_for
from tests.mqtt_helpers import free_port

PROVISIONING = Path(__file__).resolve().parents[2] / "dashboards" / "provisioning"


@pytest.mark.unit
def test_committed_monitoring_files_are_what_the_generator_makes() -> None:
    assert health.stale(config.load().metrics, max_queued_messages=MAX_QUEUED_MESSAGES) == [], \
        "run `apt-energy dashboards build` and commit the files"


@pytest.mark.unit
def test_the_health_dashboard_reads_the_provisioned_prometheus_datasource() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert [(d["uid"], d["type"]) for d in ds] == [(health.PROM_UID, "prometheus")]
    board = json.loads(health.HEALTH_JSON.read_text())
    assert board["uid"] == "apt-energy-pipeline-health" and board["panels"]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == health.PROM_UID and panel["fieldConfig"]["defaults"]["unit"]
        assert all(t["expr"] and t["datasource"] == panel["datasource"] for t in panel["targets"])
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "pipeline-health.yaml").read_text())["providers"][0]
    # compose mounts ./dashboards/provisioning at /etc/grafana/provisioning
    assert provider["options"]["path"] == "/etc/grafana/" + str(health.HEALTH_JSON.parent.relative_to(
        PROVISIONING.parent))


@pytest.mark.unit
def test_the_queue_alerts_fire_before_the_broker_drops() -> None:
    rules = yaml.safe_load(health.alert_rules(max_queued_messages=1000))["groups"][0]["rules"]
    exprs = {r["alert"]: r["expr"] for r in rules}
    assert exprs["BrokerQueueHalfFull"].endswith("> 500") and exprs["BrokerQueueNearlyFull"].endswith("> 800")


def prometheus_binary() -> tuple[str, str]:
    """Debian's prometheus and promtool, installed here (as root) if missing."""
    if not shutil.which("prometheus") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"], env=env,
                       check=True, capture_output=True, timeout=600)
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    if not prom or not tool:
        pytest.skip("prometheus is not installed and this is not root (apt-get install prometheus)")
    return prom, tool


@pytest.mark.integration
def test_promtool_accepts_the_scrape_config_and_the_alert_rules() -> None:
    _, promtool = prometheus_binary()
    result = subprocess.run([promtool, "check", "config", str(health.PROMETHEUS_DIR / "prometheus.yml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 11 rules found" in result.stdout + result.stderr


def query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())["data"]["result"]


@pytest.fixture
def bridge_with_metrics(pipeline_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, int, Path]]:
    port = free_port()
    stats = tmp_path / "bridge-stats.json"
    env = {**env_for(pipeline_settings), "APT_ENERGY_METRICS_ENABLED": "true",
           "APT_ENERGY_METRICS_BRIDGE_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "apt_energy.bridge", "--stats-file", str(stats)], env=env,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "bridge.log").open("wb"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (stats.exists() and json.loads(stats.read_text()).get("subscribed")):
            assert proc.poll() is None, (tmp_path / "bridge.log").read_text()
            time.sleep(0.2)
        yield pipeline_settings, port, stats
    finally:
        proc.terminate()
        proc.wait(60)


@pytest.mark.integration
def test_the_real_prometheus_scrapes_the_bridge_and_the_brokers_queue_depth(
        bridge_with_metrics: tuple[Settings, int, Path], tmp_path: Path) -> None:
    prom, _ = prometheus_binary()
    settings, port, stats = bridge_with_metrics
    households = spread(settings, 4)
    fleet = fleet_of(settings, households, 6)
    fleet.run()
    want = len(households) * len(settings.energy) * 6
    metrics = settings.metrics.__class__(enabled=True, bridge_port=port)
    (tmp_path / "prometheus.yml").write_text(health.scrape_config(metrics, hosts={"bridge": "127.0.0.1"},
                                                                  interval_s=1))
    (tmp_path / "alerts.yml").write_text(health.alert_rules(max_queued_messages=MAX_QUEUED_MESSAGES))
    web = free_port()
    proc = subprocess.Popen([prom, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"))
    base = f"http://127.0.0.1:{web}"
    try:
        deadline, forwarded, stored = time.monotonic() + 90, [], []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                forwarded = query(base, 'apt_bridge_forwarded_total{job="bridge"}')
                stored = query(base, "apt_broker_stored_messages")
            except OSError:
                forwarded = []
            if forwarded and float(forwarded[0]["value"][1]) >= want and stored:
                break
            time.sleep(1)
        # the readings, plus each device's status and meta messages
        assert forwarded and float(forwarded[0]["value"][1]) >= want, forwarded
        assert float(forwarded[0]["value"][1]) == json.loads(stats.read_text())["forwarded"]
        assert forwarded[0]["metric"]["part"] == "0/1"
        assert stored and float(stored[0]["value"][1]) >= 0
        assert query(base, 'up{job="bridge"}')[0]["value"][1] == "1"
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=5) as resp:
            names = {r["name"] for g in json.loads(resp.read())["data"]["groups"] for r in g["rules"]}
        assert {"BrokerQueueNearlyFull", "BridgeNotSubscribed", "AlertsInDoubt"} <= names
    finally:
        proc.terminate()
        proc.wait(60)
