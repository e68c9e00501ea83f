"""Every panel's SQL, expanded as Grafana expands it, run as the read-only role against the database a
real pipeline run filled (the shared small demo: 20 households, Jan–Feb 2024, 6 h readings)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import pytest
from apt_energy.dashboards.check import run_panels
from apt_energy.dashboards.cli import dashboard_inputs
from apt_energy.dashboards.definitions import all_dashboards
from apt_energy.dashboards.macros import TimeRange
from apt_energy.database import connect
from apt_energy.edge.ledger import Ledger

from tests.conftest import DemoRun

pytestmark = pytest.mark.integration

RANGE = TimeRange(datetime.fromisoformat("2024-01-01T00:00:00+09:00"),
                  datetime.fromisoformat("2024-02-29T23:59:59+09:00"))


@pytest.fixture(scope="module")
def results(demo_run: DemoRun) -> dict[tuple[str, str], object]:
    assert demo_run.result.returncode == 0, demo_run.result.stdout[-2000:] + demo_run.result.stderr[-2000:]
    settings = demo_run.settings
    with connect(settings) as conn:  # a flat with an alert, as someone drilling down from the alerts table
        row = conn.execute("""SELECT b.building_number, h.floor * 100 + h.unit FROM alerts a
                              JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
                              ORDER BY a.id LIMIT 1""").fetchone()
    assert row is not None
    chosen = {"building": str(row[0]), "unit": str(row[1])}
    out = {}
    with connect(settings, role="reader") as conn:
        for dashboard in all_dashboards(dashboard_inputs(settings)):
            for r in run_panels(conn, dashboard.to_json(), RANGE, chosen=chosen):
                out[(r.dashboard, r.panel)] = r
    return out


def test_every_panel_returns_rows_its_panel_type_can_draw(demo_run: DemoRun, results: dict) -> None:
    boards = all_dashboards(dashboard_inputs(demo_run.settings))
    assert set(results) == {(d.uid, p.title) for d in boards for p in d.panels}
    bad = {key: r.problems for key, r in results.items() if r.problems}
    assert bad == {}


def test_monthly_usage_panels_equal_the_simulators_ledger(demo_run: DemoRun, results: dict) -> None:
    settings = demo_run.settings
    truth: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for (_device, meter, month), (total, _count) in Ledger.read(demo_run.output / "ledger.json").items():
        truth[meter][month[:7]] += total
    for key, e in settings.energy.items():
        r = results[("apt-energy-overview", f"{e.label_ko} {e.label_en} — monthly usage ({e.unit})")]
        shown = {t.astimezone(settings.complex.tz).strftime("%Y-%m"): v for t, v in r.rows}
        assert shown.keys() == truth[key].keys() == {"2024-01", "2024-02"}
        for month, value in shown.items():
            assert value == pytest.approx(float(truth[key][month]), rel=1e-9), (key, month)


def test_building_heat_map_has_a_row_per_floor_top_floor_first(results: dict) -> None:
    r = results[("apt-energy-building", "Floor heat-map: emissions per flat / 층별 탄소 배출 (kg CO2e)")]
    assert r.columns == ("floor 층", "1호", "2호", "3호", "4호")
    assert [row[0] for row in r.rows] == list(range(20, 0, -1))
    assert r.rows[-1][1] > 0  # the demo's households live on the lowest floors of building 1


def test_alert_panels_show_the_delivery_state_and_the_quarantine_its_reasons(results: dict) -> None:
    table = results[("apt-energy-alerts", "Alerts / 경보 목록")]
    delivery = table.columns.index("delivery")
    assert table.rows and {row[delivery] for row in table.rows} == {"sent"}
    reasons = results[("apt-energy-alerts", "Quarantine reasons (7 days) / 격리 사유")]
    assert sum(row[1] for row in reasons.rows) == 3  # the demo's three invalid readings
    flat = results[("apt-energy-household", "Alerts for this flat / 세대 경보")]
    assert flat.rows


def test_the_check_command_passes_on_the_run_and_fails_on_an_empty_range(demo_run: DemoRun) -> None:
    import subprocess
    import sys

    from tests.conftest import env_for

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "apt_energy", "dashboards", "check", *args],
                              env=env_for(demo_run.settings), capture_output=True, text=True, timeout=120)

    ok = check("--from", "2024-01-01", "--to", "2024-02-29", "--var", "building=1", "--var", "unit=101")
    lines = [ln for ln in ok.stdout.splitlines() if ln.startswith(("ok ", "BAD"))]
    assert ok.returncode in (0, 1), ok.stderr
    # flat 101 may have no alert of its own; everything else must draw
    assert [ln for ln in lines if ln.startswith("BAD") and "Alerts for this flat" not in ln] == []
    assert len(lines) == sum(len(d.panels) for d in all_dashboards(dashboard_inputs(demo_run.settings)))
    empty = check("--from", "2030-01-01", "--to", "2030-02-01")
    assert empty.returncode == 1 and "no data in that range" in empty.stdout


def test_forecast_panels_show_the_actual_beside_the_forecast_inside_its_intervals(demo_run: DemoRun,
                                                                                   results: dict) -> None:
    for e in demo_run.settings.energy.values():
        for uid, title in (("apt-energy-household", f"{e.label_ko} {e.label_en} — forecast vs actual ({e.unit})"),
                           ("apt-energy-overview",
                            f"{e.label_ko} {e.label_en} — complex forecast vs actual ({e.unit})")):
            r = results[(uid, title)]
            assert r.columns == ("time", "actual", "forecast", "80% low", "80% high", "95% low", "95% high")
            both = [row for row in r.rows if row[1] is not None and row[2] is not None]
            assert len(both) == 2, (title, r.rows)        # Jan and Feb 2024: streamed and forecast
            for _, _, point, lo80, hi80, lo95, hi95 in both:
                assert lo95 <= lo80 <= point <= hi80 <= hi95


def test_bill_panels_show_the_flats_bills_tiers_and_this_months_projection(demo_run: DemoRun,
                                                                           results: dict) -> None:
    table = results[("apt-energy-household", "Bills by month / 월별 요금")]
    kinds = {(row[0].isoformat(), row[-1]) for row in table.rows}
    assert {("2024-01-01", "billed"), ("2024-02-01", "billed"), ("2024-02-01", "projected")} <= kinds
    tiers = [row[4] for row in table.rows if row[1].endswith("Electricity")]
    assert tiers and all(t in (1, 2, 3) for t in tiers)
    projected = results[("apt-energy-household", "Projected bill this month / 이번 달 예상 요금")]
    [row] = projected.rows
    assert row[-1] == sum(v for v in row[:-1] if v is not None) > 0   # total = sum over energy types
    by_tier = results[("apt-energy-overview", "Households by electricity tier / 누진 단계별 세대")]
    assert [sum(v or 0 for v in row[1:]) for row in by_tier.rows] == [20, 20]   # every household, each month
