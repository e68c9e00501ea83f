"""`apt-energy demo` end to end through the real chain, small: 20 households × 2 months."""

from __future__ import annotations

import json

import pytest
from apt_energy.database import connect

from tests.conftest import DemoRun

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_chain_and_its_truth_check_holds(demo_run: DemoRun) -> None:
    settings, result, slack = demo_run.settings, demo_run.result, demo_run.slack
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
        quarantined = [r[0] for r in conn.execute("SELECT reason FROM quarantine ORDER BY kafka_offset").fetchall()]
    assert alerts >= 1
    assert len(notified) == total  # every alert delivered ...
    posted = sorted(i for p in slack.posts() if p.get("metadata")
                    for i in p["metadata"]["event_payload"]["notification_ids"])
    assert posted == notified      # ... exactly once, to the Slack stand-in
    assert devices == (20, 20)     # device status rows, offline after the clean shutdown
    # the demo's bad input: set aside with a reason, never lost, and the good data still exact (above)
    # reasons are the contract's codes (the same the bridge uses), then a detail
    assert sorted(r.split(":")[0] for r in quarantined) == ["negative", "ts_in_future", "unit_mismatch"]
    stats = json.loads((demo_run.output / "bridge-stats.json").read_text())
    assert stats["dead_lettered"] == 1  # the non-JSON message, in the dead-letter topic


def test_demo_ends_with_bills_and_next_months_forecast(demo_run: DemoRun) -> None:
    out = demo_run.result.stdout
    assert demo_run.result.returncode == 0, out[-3000:]
    # bills of the last streamed month: the complex's total, median and 90th percentile per energy type
    assert "Bills 2024-02" in out
    for energy in ("electricity", "heating", "water"):
        assert f"bills 2024-02 {energy:<11} 20 households, total " in out
    assert "median" in out and "p90" in out
    # next month's forecast, from the imported past plus the streamed months
    assert "Forecast for next month, 2024-03" in out
    assert "forecast 2024-03 complex electricity" in out and "80%" in out and "95%" in out
    assert "forecast steps took" in out
    with connect(demo_run.settings) as conn:
        imported = conn.execute("SELECT count(DISTINCT usage_date) FROM usage_imports").fetchone()
        issued = conn.execute("SELECT min(target_month), count(DISTINCT issued_at) FROM usage_forecasts "
                              "WHERE level = 'household'").fetchone()
    assert imported == (36,)
    assert issued is not None and issued[0].isoformat() == "2024-01-01" and issued[1] == 2  # before and after


def test_the_demos_complex_forecast_is_the_sum_of_what_each_flat_is_told(demo_run: DemoRun) -> None:
    # the last screen prints the latest pooled complex forecast; the projection alert and projected bills
    # read the latest pooled household forecasts (rules.projection.model): one reconciled issue
    assert demo_run.result.returncode == 0, demo_run.result.stdout[-3000:]
    with connect(demo_run.settings) as conn:
        rows = conn.execute(
            """WITH latest AS (
                 SELECT DISTINCT ON (level, series_id, energy_type) level, energy_type, point
                 FROM usage_forecasts WHERE model = %s AND target_month = '2024-03-01'
                 ORDER BY level, series_id, energy_type, issued_at DESC)
               SELECT energy_type, sum(point) FILTER (WHERE level = 'household'),
                      count(*) FILTER (WHERE level = 'household'), sum(point) FILTER (WHERE level = 'complex')
               FROM latest GROUP BY energy_type ORDER BY 1""", (demo_run.settings.rules.projection.model,)).fetchall()
    assert [r[0] for r in rows] == ["electricity", "heating", "water"]
    for _, households, n, complex_total in rows:
        assert n == 20 and complex_total == pytest.approx(households, rel=1e-12)
