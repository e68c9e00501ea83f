"""Migration 0010 on a database that already stored intervals twice (the bug it fixes): later copies are
moved aside (duplicates counted, contradictions quarantined) and their months recomputed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from apt_energy.config import Settings
from apt_energy.database import connect, migrate

pytestmark = pytest.mark.integration


def test_migration_0010_moves_double_stored_intervals_aside_and_recomputes_their_months(fresh_db: Settings) -> None:
    with connect(fresh_db, role="owner") as conn:
        # back to the schema before 0010
        conn.execute("DROP INDEX meter_readings_interval")
        conn.execute("CREATE INDEX meter_readings_household_ts ON meter_readings (household_id, meter, ts)")
        conn.execute("DROP TABLE duplicate_readings")
        conn.execute("DELETE FROM schema_migrations WHERE version = 10")
        hid, dev = conn.execute("SELECT id, device_id FROM households ORDER BY id LIMIT 1").fetchone()  # type: ignore[misc]
        rows = [  # (life, seq, hour, value, total): hour 1 re-sent identically, hour 2 with another value
            (0, 0, 1, "0.5", "10.5"), (0, 1, 2, "0.25", "10.75"), (0, 7, 1, "0.5", "10.5"), (0, 8, 2, "0.3", "10.8")]
        for life, seq, hour, value, total in rows:
            conn.execute(
                """INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                               usage_month, kafka_partition, kafka_offset, ingested_at)
                   VALUES (%s, 'water', %s, %s, %s, '2024-03-01T00:00:00Z'::timestamptz + %s * interval '1 hour',
                           3600, %s, %s, '2024-03-01', 0, %s, now() + %s * interval '1 second')""",
                (dev, life, seq, hid, hour, value, total, seq, seq))
        conn.execute("""INSERT INTO energy_usage (household_id, energy_type, usage_date, amount, emission, amount_exact,
                                                  reading_count, covered_s)
                        VALUES (%s, '수도', '2024-03-01', 1.55, 0, 1.55, 4, 14400)""", (hid,))
        assert migrate(conn) == [10]
        conn.commit()
        assert conn.execute("SELECT seq FROM meter_readings ORDER BY seq").fetchall() == [(0,), (1,)]
        assert conn.execute("SELECT seq, stored_seq FROM duplicate_readings").fetchall() == [(7, 0)]
        reason = conn.execute("SELECT reason FROM quarantine").fetchone()
        assert reason == (f"conflict: interval 2024-03-01T02:00:00Z/3600s of {dev} water already stored as seq 1 "
                          "life 0 value 0.25 total 10.75; this seq 8 life 0 value 0.3 total 10.8",)
        usage = conn.execute("SELECT amount_exact, reading_count, covered_s FROM energy_usage").fetchone()
        assert usage == (Decimal("0.75"), 2, 7200)
