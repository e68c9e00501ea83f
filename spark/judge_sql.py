"""The measurement identity and the register's continuity, as the SQL the readings merge runs
(spark/merge_sql.py has the statements before and after, spark/sink.py the transaction).

``JUDGE`` gives each good reading of a batch one verdict (new, replay, duplicate, conflict, overlap; see
spark/merge_sql.py) into the temp table ``judged``; ``REGISTER`` flags register breaks of the new ones.
"""

from __future__ import annotations

from apt_energy.core.contract import Reason

__all__ = ["JUDGE", "REGISTER"]


def _utc(column: str) -> str:
    """SQL: a timestamptz column as the reason texts write instants (UTC, ISO-8601, Z)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _reading(label: str, prefix: str = "") -> str:
    """SQL: 'already stored as seq 17 life 5 value 0.012 total 3.1' of a judged row's columns."""
    return (f"' {label} seq ' || {prefix}seq || ' life ' || {prefix}life || ' value ' || trim_scale({prefix}value)"
            f" || ' total ' || trim_scale({prefix}total)").replace("' this seq", "'this seq")


_this_interval = f"'interval ' || {_utc('ts')} || '/' || interval_s || 's of ' || device_id || ' ' || meter"

# Each good reading of the batch judged by its measurement identity (see the module docstring): a
# temp table the merge's next statements read. ``verdict`` is new | replay | duplicate | conflict | overlap;
# ``detail`` names both readings for the quarantine reason.
JUDGE = f"""
CREATE TEMP TABLE judged ON COMMIT DROP AS
WITH good AS (
    -- only what the verdicts, the inserts and the reasons need: the raw payload stays in staging (a wide
    -- temp table spills past temp_buffers), fetched back for the few readings quarantined
    SELECT DISTINCT ON (s.device_id, s.meter, s.life, s.seq) s.device_id, s.meter, s.life, s.seq, s.ts,
           s.interval_s, s.value, s.total, s.usage_month, s.topic, s.kafka_partition, s.kafka_offset,
           h.id AS household_id
    FROM staging s JOIN households h ON h.device_id = s.device_id
    JOIN energy_types t ON t.key = s.meter  -- meter_readings has no foreign keys: these joins are its checks
    WHERE s.reason IS NULL
    ORDER BY s.device_id, s.meter, s.life, s.seq, s.kafka_partition, s.kafka_offset
), met AS (
    -- The first stored reading of the meter that ends after this one starts: stored readings never
    -- overlap, so if that one does not overlap this interval, none does.
    SELECT g.*, m.life AS m_life, m.seq AS m_seq, m.ts AS m_ts, m.interval_s AS m_interval_s,
           m.value AS m_value, m.total AS m_total
    FROM good g LEFT JOIN LATERAL (
        SELECT r.life, r.seq, r.ts, r.interval_s, r.value, r.total FROM meter_readings r
        WHERE r.household_id = g.household_id AND r.meter = g.meter AND r.ts > g.ts - g.interval_s * interval '1 second'
        ORDER BY r.ts LIMIT 1) m ON m.ts - m.interval_s * interval '1 second' < g.ts
), ranked AS (
    -- Among this batch's readings of intervals not stored yet: the first record (Kafka order) of an
    -- interval end is the candidate; a later-ending one overlapping an earlier one of the batch is refused.
    SELECT met.*,
           first_value(life) OVER same AS f_life, first_value(seq) OVER same AS f_seq,
           first_value(interval_s) OVER same AS f_interval_s, first_value(value) OVER same AS f_value,
           first_value(total) OVER same AS f_total, row_number() OVER same AS nth,
           max(ts) OVER prior AS prior_end
    FROM met WHERE m_ts IS NULL
    WINDOW same AS (PARTITION BY household_id, meter, ts ORDER BY kafka_partition, kafka_offset),
           prior AS (PARTITION BY household_id, meter ORDER BY ts, kafka_partition, kafka_offset
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), verdicts AS (
    SELECT met.*, NULL::bigint AS f_life, NULL::bigint AS f_seq, NULL::int AS f_interval_s, NULL::numeric AS f_value,
           NULL::numeric AS f_total, NULL::bigint AS nth, NULL::timestamptz AS prior_end,
           CASE WHEN (m_life, m_seq) = (life, seq) THEN 'replay'        -- the same record again (or a reused seq)
                WHEN m_ts <> ts OR m_interval_s <> interval_s THEN '{Reason.OVERLAP.value}'
                WHEN m_value = value AND m_total = total THEN 'duplicate'
                ELSE '{Reason.CONFLICT.value}' END AS verdict
    FROM met WHERE m_ts IS NOT NULL
    UNION ALL
    SELECT ranked.*,
           CASE WHEN nth = 1 AND prior_end > ts - interval_s * interval '1 second' THEN '{Reason.OVERLAP.value}'
                WHEN nth = 1 THEN 'new'
                WHEN f_interval_s <> interval_s THEN '{Reason.OVERLAP.value}'
                WHEN f_value = value AND f_total = total THEN 'duplicate'
                ELSE '{Reason.CONFLICT.value}' END
    FROM ranked
)
SELECT v.*, CASE
    WHEN verdict = 'new' THEN NULL
    WHEN nth IS NULL THEN  -- against a stored reading
        {_this_interval}
        || CASE WHEN verdict = '{Reason.OVERLAP.value}'
                THEN ' overlaps ' || {_utc("m_ts")} || '/' || m_interval_s || 's' ELSE '' END
        || {_reading("already stored as", "m_")} || '; ' || {_reading("this")}
    WHEN nth = 1 THEN      -- overlapping an earlier-ending reading of this batch
        {_this_interval} || ' overlaps a reading of the same batch ending ' || {_utc("prior_end")}
        || '; ' || {_reading("this")}
    ELSE                   -- the same interval end as the batch's first record of it
        {_this_interval}
        || CASE WHEN verdict = '{Reason.OVERLAP.value}' THEN ' overlaps the same end /' || f_interval_s || 's'
                ELSE '' END
        || {_reading("already stored as", "f_")} || '; ' || {_reading("this")}
    END AS detail
FROM verdicts v
"""

# Register continuity (spark/register.py's judge_step, as SQL) for the judged new readings, before they are
# stored: each against its predecessor in time within (device, meter, life) — the batch's own when it ends
# exactly where this one starts, else the latest stored reading ending at or before its start — and,
# for readings arriving after their successor, against the first stored one starting at or after its
# end. Stored lookups happen only at a batch run's edges (once per meter and batch in a steady stream).
REGISTER = """
WITH c AS (
    SELECT device_id, household_id, meter, life, seq, ts, interval_s, value, total,
           ts - interval_s * interval '1 second' AS start,
           lag(ts) OVER w AS b_ts, lag(total) OVER w AS b_total, lag(seq) OVER w AS b_seq,
           lead(ts - interval_s * interval '1 second') OVER w AS a_start
    FROM judged WHERE verdict = 'new'
    WINDOW w AS (PARTITION BY household_id, meter, life ORDER BY ts)
), before AS (
    SELECT c.*, p.life AS p_life, p.ts AS p_ts, p.total AS p_total, p.seq AS p_seq
    FROM c LEFT JOIN LATERAL (
        SELECT r.life, r.ts, r.total, r.seq FROM meter_readings r
        WHERE r.household_id = c.household_id AND r.meter = c.meter AND r.ts <= c.start
        ORDER BY r.ts DESC LIMIT 1) p ON true
    WHERE c.b_ts IS DISTINCT FROM c.start
), after AS (
    SELECT c.*, n.life AS n_life, n.ts AS n_ts, n.interval_s AS n_interval_s, n.total AS n_total,
           n.value AS n_value, n.seq AS n_seq
    FROM c JOIN LATERAL (
        SELECT r.life, r.ts, r.interval_s, r.total, r.value, r.seq FROM meter_readings r
        WHERE r.household_id = c.household_id AND r.meter = c.meter AND r.ts > c.ts
        ORDER BY r.ts LIMIT 1) n ON true
    WHERE c.a_start IS DISTINCT FROM c.ts
), pairs AS (   -- (earlier, later) readings of one life: seq and ts of each, the later one's value
    SELECT device_id, meter, life, b_seq AS prev_seq, b_ts AS prev_ts, b_total AS prev_total, seq, start, ts,
           value, total FROM c WHERE b_ts = start
    UNION ALL
    SELECT device_id, meter, life, p_seq, p_ts, p_total, seq, start, ts, value, total FROM before
    WHERE p_life = life AND (b_ts IS NULL OR p_ts > b_ts)
    UNION ALL
    SELECT device_id, meter, life, b_seq, b_ts, b_total, seq, start, ts, value, total FROM before
    WHERE b_ts IS NOT NULL AND NOT COALESCE(p_life = life AND p_ts > b_ts, false)
    UNION ALL
    SELECT device_id, meter, life, seq, ts, total, n_seq, n_ts - n_interval_s * interval '1 second', n_ts,
           n_value, n_total FROM after
    WHERE n_life = life AND (a_start IS NULL OR n_ts - n_interval_s * interval '1 second' < a_start)
), judged_pairs AS (
    SELECT p.*, total - prev_total AS step, extract(epoch FROM start - prev_ts)::bigint AS missing_s FROM pairs p
), breaks AS (
    INSERT INTO register_breaks (device_id, meter, life, seq, prev_seq, kind, ts, step, value, missing_s)
    SELECT device_id, meter, life, seq, prev_seq,
           CASE WHEN step < 0 THEN 'backwards' WHEN missing_s = 0 OR step < value THEN 'step' ELSE 'gap' END,
           ts, step, value, missing_s
    FROM judged_pairs
    WHERE step < 0 OR missing_s > 0 OR step <> value
    ON CONFLICT DO NOTHING
    RETURNING kind
)
SELECT count(*) FILTER (WHERE kind <> 'gap') AS breaks, count(*) FILTER (WHERE kind = 'gap') AS gaps FROM breaks
"""
