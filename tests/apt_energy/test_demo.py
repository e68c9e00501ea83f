"""`apt-energy demo` end to end through the real chain, small: 20 households × 2 months."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from config import Settings
from database import connect
from tests.conftest import env_for
from tests.slack_stub import SlackStub

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_chain_and_its_truth_check_holds(
        pipeline_settings: Settings, database_factory: Callable[[], Settings], tmp_path: Path) -> None:
    settings = dataclasses.replace(pipeline_settings, postgres=database_factory().postgres)
    slack = SlackStub()
    env = {**env_for(settings),
           "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
           "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_BASE_URL": slack.base_url,
           # January electricity is ~250 kWh: a lower warning level makes sure alerts are raised
           "APT_ENERGY_RULES_THRESHOLDS_ELECTRICITY_WARNING": "230"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "apt_energy", "demo", "--households", "20", "--months", "2", "--interval", "6h",
             "--output", str(tmp_path / "demo")],
            env=env, capture_output=True, text=True, timeout=600)
    finally:
        slack.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "✓ PostgreSQL equals the simulator's ledger exactly" in out
    assert "Yearly usage and emissions per building" in out and "Where to look next" in out
    with connect(settings) as conn:
        alerts = conn.execute("SELECT count(*) FROM alerts WHERE rule = 'threshold'").fetchone()[0]  # type: ignore[index]
        notified = [r[0] for r in conn.execute(
            "SELECT id FROM alert_notifications WHERE state = 'sent' ORDER BY id").fetchall()]
        devices = conn.execute("SELECT count(*), count(*) FILTER (WHERE state = 'offline') FROM devices").fetchone()
        total = conn.execute("SELECT count(*) FROM alert_notifications").fetchone()[0]  # type: ignore[index]
    assert alerts >= 1
    assert len(notified) == total  # every alert delivered ...
    posted = sorted(i for p in slack.posts() if p.get("metadata")
                    for i in p["metadata"]["event_payload"]["notification_ids"])
    assert posted == notified      # ... exactly once, to the Slack stand-in
    assert devices == (20, 20)     # device status rows, offline after the clean shutdown
