"""The stream job's merge as it was before measurement identity (commit 38a1466): the same-run baseline
of ``bench_spark``'s merge-cost phases. Readings were keyed only by (device_id, meter, life, seq); the
interval had a plain (household_id, meter, ts) index. Its database gets that index back
(:func:`previous_schema`), so the baseline pays what the old merge paid, no more.
"""

from __future__ import annotations

import psycopg
from apt_energy.spark import merge_sql
from apt_energy.spark.sink import Applied, Counts, MonthChange, PostgresSink, StagingSummary
from psycopg.rows import class_row

# Verbatim from spark/sink.py at 38a1466.
_APPLY = """
WITH good AS (
    SELECT DISTINCT ON (s.device_id, s.meter, s.life, s.seq) s.*, h.id AS household_id
    FROM staging s JOIN households h ON h.device_id = s.device_id
    JOIN energy_types t ON t.key = s.meter  -- meter_readings has no foreign keys: these joins are its checks
    WHERE s.reason IS NULL
    ORDER BY s.device_id, s.meter, s.life, s.seq, s.kafka_partition, s.kafka_offset
), new AS (
    INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                usage_month, kafka_partition, kafka_offset)
    SELECT device_id, meter, life, seq, household_id, ts, interval_s, value, total, usage_month, kafka_partition,
           kafka_offset
    FROM good
    ON CONFLICT (device_id, meter, life, seq) DO NOTHING
    RETURNING household_id, meter, usage_month, value, interval_s
), agg AS (
    SELECT household_id, meter, usage_month, sum(value) AS amount, count(*) AS n, sum(interval_s) AS covered
    FROM new GROUP BY household_id, meter, usage_month
), up AS (
    INSERT INTO energy_usage AS u (household_id, energy_type, usage_date, amount, emission, amount_exact,
                                   reading_count, covered_s)
    SELECT a.household_id, et.label_ko, a.usage_month, a.amount::float8,
           (a.amount * COALESCE(f.factor, 0))::float8, a.amount, a.n, a.covered
    FROM agg a
    JOIN energy_types et ON et.key = a.meter
    LEFT JOIN LATERAL (
        SELECT ef.factor FROM emission_factors ef
        WHERE ef.energy_type = a.meter AND ef.valid_from <= a.usage_month
        ORDER BY ef.valid_from DESC LIMIT 1) f ON true
    ON CONFLICT (household_id, energy_type, usage_date) DO UPDATE SET
        amount_exact = u.amount_exact + EXCLUDED.amount_exact,
        amount = (u.amount_exact + EXCLUDED.amount_exact)::float8,
        emission = ((u.amount_exact + EXCLUDED.amount_exact) * COALESCE((
            SELECT ef.factor FROM emission_factors ef JOIN energy_types t ON t.key = ef.energy_type
            WHERE t.label_ko = u.energy_type AND ef.valid_from <= u.usage_date
            ORDER BY ef.valid_from DESC LIMIT 1), 0))::float8,
        reading_count = u.reading_count + EXCLUDED.reading_count,
        covered_s = u.covered_s + EXCLUDED.covered_s,
        updated_at = now()
    RETURNING u.household_id, u.energy_type, u.usage_date, u.amount_exact, u.covered_s
)
SELECT up.household_id, a.meter AS energy_type, up.usage_date AS month, up.amount_exact - a.amount AS before,
       up.amount_exact AS after, up.covered_s, a.n AS inserted, h.building_id
FROM up
JOIN energy_types et ON et.label_ko = up.energy_type
JOIN agg a ON a.household_id = up.household_id AND a.meter = et.key AND a.usage_month = up.usage_date
JOIN households h ON h.id = up.household_id
"""

_REUSED = """
WITH reused AS (
    SELECT s.topic, s.kafka_partition, s.kafka_offset, 'reused seq' AS reason, left(s.device_id, 64) AS device_id,
           s.raw
    FROM staging s
    JOIN meter_readings m ON m.device_id = s.device_id AND m.meter = s.meter AND m.life = s.life AND m.seq = s.seq
    WHERE s.reason IS NULL AND (m.value IS DISTINCT FROM s.value OR m.ts IS DISTINCT FROM s.ts)
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM reused
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM reused) AS bad, (SELECT count(*) FROM ins) AS new
"""


def previous_schema(conn: psycopg.Connection) -> None:
    """The old index in place of the measurement key (run as the owner)."""
    conn.execute("DROP INDEX meter_readings_interval")
    conn.execute("CREATE INDEX meter_readings_household_ts ON meter_readings (household_id, meter, ts)")


class PreviousMergeSink(PostgresSink):
    """:class:`PostgresSink` with the old ``_apply_readings`` (staging, quarantine and rules unchanged)."""

    def _apply_readings(self, conn: psycopg.Connection, load: object) -> Applied:  # type: ignore[override]
        conn.execute(merge_sql.STAGING_DDL)
        load()  # type: ignore[operator]
        with conn.cursor(row_factory=class_row(StagingSummary)) as cur:
            summary = cur.execute("SELECT count(*) AS rows, min(received_ms) AS oldest_received_ms "
                                  "FROM staging").fetchone()
        with conn.cursor(row_factory=class_row(Counts)) as cur:
            bad = cur.execute(merge_sql.QUARANTINE).fetchone()
        with conn.cursor(row_factory=class_row(MonthChange)) as cur:
            changes = cur.execute(_APPLY).fetchall()
        assert bad is not None and summary is not None
        reused = Counts(0, 0)
        if sum(c.inserted for c in changes) < summary.rows - bad.bad:
            with conn.cursor(row_factory=class_row(Counts)) as cur:
                reused = cur.execute(_REUSED).fetchone() or reused
        alerts, resolved = self._evaluate_rules(conn, changes)
        return Applied(summary.rows, changes, bad.bad + reused.bad, alerts, resolved, summary.oldest_received_ms)
