"""Bills in PostgreSQL: imported history is billed, marked, and re-billed when its usage changes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from apt_energy.billing import store
from apt_energy.billing.cli import tariffs_for
from apt_energy.config import Settings
from apt_energy.database.connection import connect
from apt_energy.forecast.history import import_months

from apt_energy import billing

pytestmark = pytest.mark.integration


def test_imported_usage_is_marked_billed_and_rebilled_after_a_change(fresh_db: Settings) -> None:
    devices = [h.device_id for h in fresh_db.complex.households()[:2]]
    totals = np.array([[[201.0, 1000.0, 25.6], [400.0, 500.0, 18.0]]])   # 1 month × 2 households × 3 meters
    rates = billing.load()
    with connect(fresh_db) as conn:
        n = import_months(conn, device_ids=devices, meters=["electricity", "heating", "water"],
                          months=[date(2025, 3, 1)], totals=totals, decimals=[3, 3, 4], source="test")
        assert n == 6
        assert conn.execute("SELECT count(*) FROM usage_imports").fetchone() == (6,)
        # importing again leaves existing months alone
        assert import_months(conn, device_ids=devices, meters=["electricity", "heating", "water"],
                             months=[date(2025, 3, 1)], totals=totals * 2, decimals=[3, 3, 4], source="test") == 0
        assert store.compute(conn, rates) == 6
        lines = store.statement(conn, devices[0], month=date(2025, 3, 1))
        totals_by_type = {line.energy_type: line.total_krw for line in lines}
        assert totals_by_type == {"electricity": Decimal(32400), "heating": Decimal(118180), "water": Decimal(23800)}
        assert store.compute(conn, rates) == 0   # nothing changed
        conn.execute("UPDATE energy_usage SET amount_exact = 401, updated_at = now() "
                     "WHERE household_id = (SELECT id FROM households WHERE device_id = %s) AND energy_type = '전력'",
                     (devices[0],))
        conn.commit()
        assert store.compute(conn, rates) == 1
        bill = conn.execute("SELECT tier, total_krw FROM bills b JOIN households h ON h.id = b.household_id "
                            "WHERE h.device_id = %s AND energy_type = 'electricity'", (devices[0],)).fetchone()
        assert bill == (3, Decimal(90710))
        summary = store.month_summary(conn, date(2025, 3, 1))
        assert [s.households for s in summary] == [2, 2, 2]


def test_heating_base_charge_uses_the_contract_area_of_the_buildings_unit_type(fresh_db: Settings) -> None:
    from apt_energy.billing.cli import contract_areas

    areas = contract_areas(fresh_db)
    assert (areas[1], areas[11]) == (Decimal("112.0"), Decimal("148.0"))   # config/complex.yaml unit types
    small = next(h for h in fresh_db.complex.households() if h.building == 1)
    large = next(h for h in fresh_db.complex.households() if h.building == 11)
    totals = np.array([[[0.0, 1000.0, 0.0], [0.0, 1000.0, 0.0]]])
    with connect(fresh_db) as conn:
        import_months(conn, device_ids=[small.device_id, large.device_id], meters=["electricity", "heating", "water"],
                      months=[date(2025, 3, 1)], totals=totals, decimals=[3, 3, 4], source="test")
        store.compute(conn, billing.load(), contract_areas=areas)
        heat = {line.quantity for d in (small, large) for line in store.statement(conn, d.device_id)
                if line.energy_type == "heating" and line.line_no == 0}
    assert heat == {Decimal("112.0"), Decimal("148.0")}   # the base line's quantity is the flat's m²


def test_projected_bill_adds_the_forecast_share_of_the_days_left_by_event_time(fresh_db: Settings) -> None:
    from datetime import datetime

    h = fresh_db.complex.households()[0]
    tz = fresh_db.complex.tz
    rates = billing.load()
    march = date(2025, 3, 1)
    with connect(fresh_db) as conn:
        import_months(conn, device_ids=[h.device_id], meters=["electricity", "heating", "water"], months=[march],
                      totals=np.array([[[300.0, 0.0, 0.0]]]), decimals=[3, 3, 4], source="test")
        # the month's latest reading ends on 21 March, local midnight: 20 days of 31 elapsed
        conn.execute(
            """INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                           usage_month, kafka_partition, kafka_offset)
               SELECT %s, 'electricity', 0, 1, id, %s, 86400, 15, 300, %s, 0, 0 FROM households WHERE device_id = %s""",
            (h.device_id, datetime(2025, 3, 21, tzinfo=tz), march, h.device_id))
        for issued, point in ((datetime(2025, 1, 1, tzinfo=tz), 100.0), (datetime(2025, 2, 1, tzinfo=tz), 360.0)):
            conn.execute("""INSERT INTO usage_forecasts (level, series_id, energy_type, target_month, model, horizon,
                                                         point, lo80, hi80, lo95, hi95, issued_at)
                            VALUES ('household', %s, 'electricity', %s, 'ets', 1, %s, 0, 0, 0, 0, %s)""",
                         (h.device_id, march, point, issued))
        conn.commit()
        assert store.project(conn, rates, march, tz=tz) == 1     # heating and water have no forecast
        row = conn.execute("SELECT days_elapsed, forecast, projected, tier, total_krw FROM bill_projections").fetchone()
    assert row is not None
    days, forecast, projected, tier, total = row
    assert (days, forecast, tier) == (20.0, 360.0, 3)   # the latest issue wins; 427.7 kWh is tier 3
    assert projected == pytest.approx(Decimal(300) + Decimal(360) * 11 / 31, abs=Decimal("0.000001"))
    assert total == billing.progressive_bill(rates["electricity"], march, projected).total


def test_billing_months_cut_at_the_reading_day_sum_the_readings_of_each_cycle(fresh_db: Settings) -> None:
    from datetime import datetime

    h = fresh_db.complex.households()[0]
    tz = fresh_db.complex.tz
    rates = billing.load()
    # reading day 15: July's billing month ends 15 Aug 00:00 local, August's runs to 15 Sep 00:00; a
    # reading's ts is its interval's end, so the hour ending at 15 Aug 00:00 is still July's
    readings = [(datetime(2024, 8, 15, 0, 0, tzinfo=tz), 100), (datetime(2024, 8, 15, 1, 0, tzinfo=tz), 200),
                (datetime(2024, 9, 14, 23, 0, tzinfo=tz), 150), (datetime(2024, 9, 15, 1, 0, tzinfo=tz), 50)]
    with connect(fresh_db) as conn:
        for seq, (ts, value) in enumerate(readings):
            conn.execute(
                """INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                               usage_month, kafka_partition, kafka_offset)
                   SELECT %s, 'electricity', 0, %s, id, %s, 3600, %s, 0, %s, 0, %s FROM households
                   WHERE device_id = %s""",
                (h.device_id, seq, ts, value, date(ts.year, ts.month, 1), seq, h.device_id))
        conn.execute("""INSERT INTO usage_forecasts (level, series_id, energy_type, target_month, model, horizon,
                                                     point, lo80, hi80, lo95, hi95, issued_at)
                        VALUES ('household', %s, 'electricity', '2024-08-01', 'ets', 1, 620, 0, 0, 0, 0, now())""",
                     (h.device_id,))
        conn.commit()
        assert store.compute(conn, rates, reading_day=15, tz=tz) == 3
        bills = dict(conn.execute("SELECT usage_month, usage FROM bills ORDER BY 1").fetchall())
        assert bills == {date(2024, 7, 1): Decimal(100), date(2024, 8, 1): Decimal(350), date(2024, 9, 1): Decimal(50)}
        august = conn.execute("SELECT tier, total_krw FROM bills WHERE usage_month = '2024-08-01'").fetchone()
        assert august == (2, billing.progressive_bill(rates["electricity"], date(2024, 8, 1), Decimal(350)).total)
        assert store.compute(conn, rates, reading_day=15, tz=tz) == 0
        # the cycle's latest reading is at 14 Sep 23:00: 30 days 23 h of its 31 elapsed
        assert store.project(conn, rates, date(2024, 8, 1), tz=tz, reading_day=15) == 1
        days, projected = conn.execute("SELECT days_elapsed, projected FROM bill_projections").fetchone()
    assert days == pytest.approx(30 + 23 / 24)
    assert projected == pytest.approx(Decimal(350) + Decimal(620) * Decimal(1 / 24) / 31, abs=Decimal("0.0001"))


def test_a_new_energy_type_with_its_tariff_is_billed_end_to_end(fresh_db: Settings, tmp_path: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import shutil
    from pathlib import Path

    from apt_energy.config.settings import DEFAULT_CONFIG_DIR
    from apt_energy.database.seed import seed

    from apt_energy import config
    from tests.billing.test_tariff_rules import add_gas

    directory = Path(str(tmp_path))
    for name in ("complex.yaml", "pipeline.yaml", "messages.yaml", "tariffs.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, directory / name)
    add_gas(directory)
    monkeypatch.setenv("APT_ENERGY_CONFIG_DIR", str(directory))
    loaded = config.load(directory)
    settings = dataclasses.replace(loaded, postgres=fresh_db.postgres, secrets=fresh_db.secrets)
    h = settings.complex.households()[0]
    with connect(settings, role="owner") as conn:
        seed(conn, settings)           # the energy type (가스, MJ) and its emission factor
        conn.commit()
    with connect(settings) as conn:
        import_months(conn, device_ids=[h.device_id], meters=["gas"], months=[date(2025, 3, 1)],
                      totals=np.array([[[2000.0]]]), decimals=[3], source="test")
        assert store.compute(conn, tariffs_for(settings)) == 1
        lines = store.statement(conn, h.device_id)
    # 1,250 + 2,000 MJ × 22.2769 = 44,553; VAT 4,580; 50,383 → 50,380 (the test's flat gas tariff)
    assert {(line.energy_type, line.total_krw) for line in lines} == {("gas", Decimal(50380))}
    assert [line.label for line in lines] == ["기본요금", "사용요금", "부가가치세", "10원 미만 절사"]
