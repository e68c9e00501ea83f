"""Exports read back: every kind, CSV and JSON Lines, has the database's rows and numbers, each row's
period in local time and UTC, and units in the header."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from apt_energy.billing import export, store
from apt_energy.billing.cli import contract_areas, tariffs_for
from apt_energy.config import PROJECT_ROOT, Settings
from apt_energy.database.connection import connect
from apt_energy.forecast.history import import_months
from apt_energy.stack import NativeStack

from tests.conftest import create_database, drop_databases

pytestmark = pytest.mark.integration

MONTHS = [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)]


@pytest.fixture(scope="module")
def filled(native_stack: NativeStack) -> Iterator[Settings]:
    """3 households × 3 months of usage, billed; 2 days of hourly readings across 1 March (local) for
    two of them; a threshold and a night-flow alert. One database for the module: the tests only read."""
    fresh_db = create_database(native_stack)
    try:
        yield fill(fresh_db)
    finally:
        drop_databases(native_stack, [fresh_db.postgres.database])


def fill(fresh_db: Settings) -> Settings:
    tz = fresh_db.complex.tz
    cx = fresh_db.complex.households()[:3]
    totals = np.arange(len(MONTHS) * 3 * 3, dtype=float).reshape(len(MONTHS), 3, 3) * 7.125 + 100
    with connect(fresh_db) as conn:
        import_months(conn, device_ids=[h.device_id for h in cx], meters=["electricity", "heating", "water"],
                      months=MONTHS, totals=totals, decimals=[3, 3, 4], source="test")
        start = datetime(2025, 2, 28, tzinfo=tz)
        for i in range(48):
            for h in cx[:2]:
                conn.execute(
                    """INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value,
                                                   total, usage_month, kafka_partition, kafka_offset)
                       SELECT %s, 'water', 0, %s, id, %s, 3600, %s, %s, '2025-02-01', 0, %s FROM households
                       WHERE device_id = %s""",
                    (h.device_id, i, start + timedelta(hours=i + 1), Decimal("0.0125") * (i % 5), Decimal(i), i,
                     h.device_id))
        conn.execute("""INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                            unit)
                        SELECT id, 'electricity', '2025-02-01', 'threshold', 'warning', 512.5, 500, 'kWh'
                        FROM households WHERE device_id = %s""", (cx[0].device_id,))
        conn.execute("""INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                            unit)
                        SELECT id, 'water', '2025-03-01', 'night_flow', 'critical', 5, 4, 'm³'
                        FROM households WHERE device_id = %s""", (cx[1].device_id,))
        conn.commit()
        store.compute(conn, tariffs_for(fresh_db), contract_areas=contract_areas(fresh_db))
    return fresh_db


def run_export(settings: Settings, kind: export.Kind, fmt: export.Format, **kw: object) -> list[dict[str, str]]:
    options = export.Options(start=kw.pop("start", date(2025, 1, 1)), end=kw.pop("end", date(2025, 4, 1)),  # type: ignore[arg-type]
                             tz=settings.complex.tz, units={k: e.unit for k, e in settings.energy.items()},
                             **kw)  # type: ignore[arg-type]
    out = io.StringIO()
    with connect(settings) as conn:
        n = export.write(out, fmt, export.header(kind, options), export.rows(conn, kind, options))
    text = out.getvalue()
    records = (list(csv.DictReader(io.StringIO(text))) if fmt == "csv"
               else [json.loads(line) for line in text.splitlines()])
    assert len(records) == n
    return records


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_usage_export_has_the_databases_rows_with_local_and_utc_periods(filled: Settings, fmt: export.Format) -> None:
    rows = run_export(filled, "usage", fmt)
    with connect(filled) as conn:
        db = {(d, k, m): a for d, k, m, a in conn.execute(
            """SELECT h.device_id, t.key, u.usage_date, u.amount_exact FROM energy_usage u
               JOIN households h ON h.id = u.household_id JOIN energy_types t ON t.label_ko = u.energy_type""")}
    assert len(rows) == len(db) == 27
    for r in rows:
        month = date.fromisoformat(r["period_start_local"][:10])
        assert Decimal(str(r["amount"])) == db[(r["household"], r["energy_type"], month)]
    march = next(r for r in rows if r["period_start_local"].startswith("2025-03"))
    assert (march["period_start_local"], march["period_end_local"]) == ("2025-03-01T00:00:00+09:00",
                                                                         "2025-04-01T00:00:00+09:00")
    assert (march["period_start_utc"], march["period_end_utc"]) == ("2025-02-28T15:00:00Z", "2025-03-31T15:00:00Z")
    assert "emission (kg CO2e)" in rows[0] and "unit" in rows[0]


def test_bills_export_names_units_and_matches_the_bills(filled: Settings) -> None:
    rows = run_export(filled, "bills", "csv", energy="electricity")
    with connect(filled) as conn:
        db = {(d, m): t for d, m, t in conn.execute(
            """SELECT h.device_id, b.usage_month, b.total_krw FROM bills b JOIN households h ON h.id = b.household_id
               WHERE b.energy_type = 'electricity'""")}
    assert len(rows) == len(db) == 9
    assert {(r["household"], date.fromisoformat(r["period_start_local"][:10])): Decimal(r["total (KRW)"])
            for r in rows} == db
    assert "usage (kWh)" in rows[0]


def test_alerts_export_gives_a_night_its_hours_and_a_month_its_days(filled: Settings) -> None:
    rows = {r["rule"]: r for r in run_export(filled, "alerts", "jsonl")}
    assert set(rows) == {"threshold", "night_flow"}
    night = rows["night_flow"]
    assert (night["period_start_local"], night["period_end_local"]) == ("2025-03-01T00:00:00+09:00",
                                                                         "2025-03-01T06:00:00+09:00")
    assert (rows["threshold"]["observed"], rows["threshold"]["unit"]) == (512.5, "kWh")


def test_readings_export_streams_each_reading_once_by_its_interval_end(filled: Settings) -> None:
    one = filled.complex.households()[0].device_id
    rows = run_export(filled, "readings", "csv", household=one, energy="water", start=date(2025, 3, 1),
                      end=date(2025, 3, 2))
    tz = filled.complex.tz
    first, last = datetime(2025, 3, 1, tzinfo=tz), datetime(2025, 3, 2, tzinfo=tz)
    with connect(filled) as conn:
        db = conn.execute(
            """SELECT r.seq, r.value FROM meter_readings r WHERE r.device_id = %s AND r.ts > %s AND r.ts <= %s
               ORDER BY r.ts""", (one, first, last)).fetchall()
    assert len(rows) == len(db) == 24    # the hours ending 01:00 .. 24:00 of 1 March, local
    assert [(int(r["seq"]), Decimal(r["value (m³)"])) for r in rows] == db
    assert rows[0]["period_start_local"] == "2025-03-01T00:00:00+09:00"
    assert rows[0]["period_end_utc"] == datetime(2025, 3, 1, 1, tzinfo=tz).astimezone(UTC).isoformat().replace(
        "+00:00", "Z")


def test_the_export_command_writes_a_file_and_counts_its_rows(filled: Settings, tmp_path: object) -> None:
    out = f"{tmp_path}/readings.jsonl"
    env = {**os.environ, "APT_ENERGY_POSTGRES_DATABASE": filled.postgres.database}
    done = subprocess.run([sys.executable, "-m", "apt_energy", "export", "readings", "--from", "2025-02",
                           "--to", "2025-04", "--format", "jsonl", "--out", out], capture_output=True, text=True,
                          env=env, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "exported readings: 96 rows" in done.stderr
    with open(out, encoding="utf-8") as f:
        assert sum(1 for _ in f) == 96
