"""The readings merge as set-based SQL over a temp table; spark/sink.py runs it in one transaction per
micro-batch (COPY or the executors' ``reading_staging`` into the temp table ``staging``).

Two identities
--------------
A reading's identity for *transport* is (device_id, meter, life, seq); its identity as a *measurement*
is the meter and the interval it covers (interval end ``ts`` and ``interval_s``). The merge judges each
good reading of a batch (``_JUDGE``, one index probe per reading) and gives it one verdict:

* **replay** — its transport key is stored (a Kafka replay after a crash, a duplicating producer): silent,
  counted nowhere, so replaying the same offsets any number of times changes nothing. A stored key with
  another value or ts is a reused seq (a gateway that lost its counter without starting a new ``life``),
  quarantined as ``reused seq`` as before.
* **duplicate** — the same interval is stored under another seq or life with the same value and register
  (a restarted gateway re-sending its buffer, a reset sequence): not stored, not summed, counted once per
  transport key in ``duplicate_readings`` (so a replay of the duplicate does not count again).
* **conflict** — the same interval is stored with another value or register: quarantined with a reason
  naming both readings (``conflict: interval 2024-03-01T01:00:00Z/3600s of hanbit-01-1001 water already
  stored as seq 17 life 5 value 0.012 total 3.1; this seq 93 life 6 value 0.02 total 3.2``). The first
  stored reading stands: there is no revision policy.
* **overlap** — the interval overlaps a stored one of another length or alignment: quarantined the same way.
* **new** — inserted into ``meter_readings`` (unique on the interval end per meter) and added to
  ``energy_usage`` (exact NUMERIC sums); its meter's row in ``meter_lives`` follows.

Inside one batch the first record of an interval (Kafka order) is the candidate and later ones are
duplicates or conflicts of it; an interval overlapping an earlier-ending one of the same batch is an
overlap. Bad records go to ``quarantine`` (keyed by their Kafka coordinates, so a replay does not
duplicate them). Alerts for the rows the batch changed are written in the same transaction, with their
Slack delivery queued in the outbox.
"""

from __future__ import annotations

from apt_energy.spark.staging import STAGED_COLUMNS as _ALL_STAGED

__all__ = ["APPLY", "COUNT_STAGED", "DELETE_STAGED", "LOAD_STAGED", "LOAD_STAGED_SUBSET", "MARK_REFUSED",
           "QUARANTINE", "REUSED", "SET_ASIDE", "STAGED_KEYS", "STAGING_DDL"]

STAGING_DDL = """
CREATE TEMP TABLE staging (
    device_id TEXT, meter TEXT, life BIGINT, seq BIGINT, ts TIMESTAMPTZ, interval_s INTEGER, value NUMERIC(20, 6),
    total NUMERIC(24, 6), unit TEXT, usage_month DATE, topic TEXT, kafka_partition INTEGER,
    kafka_offset BIGINT, reason TEXT, raw TEXT, received_ms BIGINT
) ON COMMIT DROP
"""

# Returns (bad records in this batch, of which newly quarantined: a replay finds them there already).
QUARANTINE = """
WITH bad AS (
    SELECT s.topic, s.kafka_partition, s.kafka_offset,
           COALESCE(s.reason, CASE WHEN h.id IS NULL THEN 'unknown device ' || left(s.device_id, 64)
                                   ELSE 'unknown meter ' || left(s.meter, 20) END) AS reason,
           left(s.device_id, 64) AS device_id, s.raw
    FROM staging s LEFT JOIN households h ON h.device_id = s.device_id LEFT JOIN energy_types t ON t.key = s.meter
    WHERE s.reason IS NOT NULL OR h.id IS NULL OR t.key IS NULL
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM bad
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM bad) AS bad, (SELECT count(*) FROM ins) AS new
"""

# After APPLY: good readings whose key is stored with another value or ts (by an earlier batch, or by
# another record of this one) reuse a seq. An identical replay matches its stored row and stays silent.
# Duplicates, conflicts and overlaps were judged already (``judged``): only the others are looked at here.
REUSED = """
WITH reused AS (
    SELECT s.topic, s.kafka_partition, s.kafka_offset, 'reused seq' AS reason, left(s.device_id, 64) AS device_id,
           s.raw
    FROM staging s
    JOIN meter_readings m ON m.device_id = s.device_id AND m.meter = s.meter AND m.life = s.life AND m.seq = s.seq
    WHERE s.reason IS NULL AND (m.value IS DISTINCT FROM s.value OR m.ts IS DISTINCT FROM s.ts)
      AND NOT EXISTS (SELECT 1 FROM judged j WHERE j.topic = s.topic AND j.kafka_partition = s.kafka_partition
                      AND j.kafka_offset = s.kafka_offset AND j.verdict NOT IN ('new', 'replay'))
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM reused
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM reused) AS bad, (SELECT count(*) FROM ins) AS new
"""

_COLUMNS = ", ".join(_ALL_STAGED[2:])   # the record's columns, without its batch key

# One batch of reading_staging (filled by the executors) into this transaction's temp staging table.
LOAD_STAGED = f"""
INSERT INTO staging ({_COLUMNS})
SELECT {_COLUMNS} FROM reading_staging WHERE stream_id = %s AND batch_id = %s
"""

# ... or only some of its records (bisection), by Kafka coordinates.
LOAD_STAGED_SUBSET = LOAD_STAGED + """
  AND (kafka_partition, kafka_offset) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))
"""

STAGED_KEYS = """
SELECT kafka_partition, kafka_offset FROM reading_staging WHERE stream_id = %s AND batch_id = %s ORDER BY 1, 2
"""

# Refused records keep only their quarantine entry (a validation reason, if they had one, wins).
MARK_REFUSED = """
UPDATE reading_staging s SET reason = COALESCE(s.reason, r.reason)
FROM unnest(%s::int[], %s::bigint[], %s::text[]) AS r(kafka_partition, kafka_offset, reason)
WHERE s.stream_id = %s AND s.batch_id = %s AND s.kafka_partition = r.kafka_partition
  AND s.kafka_offset = r.kafka_offset
"""

DELETE_STAGED = "DELETE FROM reading_staging WHERE stream_id = %s AND batch_id = %s"

COUNT_STAGED = "SELECT count(*) FROM reading_staging WHERE stream_id = %s AND batch_id = %s"

# The judged new readings → meter_readings → energy_usage, returning each changed month with its
# month-to-date before and after this batch; the meter's life in meter_lives follows what was stored.
# ON CONFLICT without a target: a reused seq (its key stored at another time) is left for REUSED.
APPLY = """
WITH new AS (
    INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                usage_month, kafka_partition, kafka_offset)
    SELECT device_id, meter, life, seq, household_id, ts, interval_s, value, total, usage_month, kafka_partition,
           kafka_offset
    FROM judged WHERE verdict = 'new'
    ON CONFLICT DO NOTHING
    RETURNING household_id, device_id, meter, life, usage_month, ts, value, total, interval_s
), lives AS (
    INSERT INTO meter_lives AS l (device_id, meter, life, first_interval_start, first_register, last_interval_end,
                                  last_register)
    SELECT device_id, meter, life, min(ts - interval_s * interval '1 second'),
           (array_agg(total - value ORDER BY ts))[1], max(ts), (array_agg(total ORDER BY ts DESC))[1]
    FROM new GROUP BY device_id, meter, life
    ON CONFLICT (device_id, meter, life) DO UPDATE SET
        first_register = CASE WHEN l.first_interval_start IS NULL
                                OR EXCLUDED.first_interval_start < l.first_interval_start
                              THEN EXCLUDED.first_register ELSE l.first_register END,
        first_interval_start = LEAST(l.first_interval_start, EXCLUDED.first_interval_start),
        last_register = CASE WHEN l.last_interval_end IS NULL OR EXCLUDED.last_interval_end > l.last_interval_end
                             THEN EXCLUDED.last_register ELSE l.last_register END,
        last_interval_end = GREATEST(l.last_interval_end, EXCLUDED.last_interval_end),
        updated_at = now()
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

# Duplicates are counted (once per transport identity, so a replay adds nothing) and conflicts and
# overlaps quarantined with the reason naming both readings. Returns the batch's counts.
SET_ASIDE = """
WITH dup AS (
    INSERT INTO duplicate_readings (device_id, meter, life, seq, household_id, ts, interval_s, usage_month,
                                    stored_life, stored_seq, kafka_partition, kafka_offset)
    SELECT device_id, meter, life, seq, household_id, ts, interval_s, usage_month, COALESCE(m_life, f_life),
           COALESCE(m_seq, f_seq), kafka_partition, kafka_offset
    FROM judged WHERE verdict = 'duplicate'
    ON CONFLICT (device_id, meter, life, seq) DO NOTHING
    RETURNING 1
), bad AS (
    SELECT j.topic, j.kafka_partition, j.kafka_offset, j.verdict || ': ' || j.detail AS reason,
           left(j.device_id, 64) AS device_id, s.raw
    FROM judged j JOIN staging s USING (topic, kafka_partition, kafka_offset)
    WHERE j.verdict NOT IN ('new', 'replay', 'duplicate')
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM bad
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM bad) AS bad, (SELECT count(*) FROM ins) AS new,
       (SELECT count(*) FROM judged WHERE verdict = 'duplicate') AS duplicates,
       (SELECT count(*) FROM dup) AS new_duplicates
"""
