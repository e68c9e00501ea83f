-- A meter interval is stored at most once (issue 21). A reading's identity for transport is
-- (device_id, meter, life, seq); its identity as a measurement is the meter and the interval it covers.
-- A gateway that re-sends an interval under a new seq or life (a restart, a rebooted load-profile buffer,
-- a reset sequence) must not add it twice.
--
-- households.device_id is unique, so (household_id, meter, ts) names the same interval end as
-- (device_id, meter, ts). The index the night-flow rule already reads becomes unique instead of adding a
-- second one: the extra key costs the merge one index probe per reading, not one more index to maintain.
-- Two stored readings ending at the same instant would overlap anyway; other overlaps are refused by the
-- merge (spark/sink.py), which finds for each reading the first stored one ending after it starts.
--
-- A database that already holds an interval twice (the bug this fixes) keeps the first stored copy
-- (oldest ingested, then lowest life and seq); later copies move to duplicate_readings when they repeat
-- it, to quarantine when they contradict it, and energy_usage is recomputed for the months they touched.

-- Same interval, same value and register, another transport identity: counted here, not stored, not summed.
-- Keyed by the transport identity, so a replay of the same Kafka records does not count again.
CREATE TABLE duplicate_readings (
    device_id       VARCHAR(64) NOT NULL,
    meter           VARCHAR(20) NOT NULL,
    life            BIGINT NOT NULL,
    seq             BIGINT NOT NULL,
    household_id    INTEGER NOT NULL,
    ts              TIMESTAMPTZ NOT NULL,
    interval_s      INTEGER NOT NULL,
    usage_month     DATE NOT NULL,
    stored_life     BIGINT NOT NULL,             -- the stored reading this one repeats
    stored_seq      BIGINT NOT NULL,
    kafka_partition INTEGER,
    kafka_offset    BIGINT,
    seen_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, meter, life, seq)
);
CREATE INDEX duplicate_readings_month ON duplicate_readings (household_id, meter, usage_month);

-- A plain table, dropped below: the migration role needs no TEMP privilege.
CREATE TABLE _ranked_0010 AS
SELECT r.device_id, r.meter, r.life, r.seq, r.household_id, r.ts, r.interval_s, r.value, r.total, r.usage_month,
       r.kafka_partition, r.kafka_offset,
       first_value(r.life) OVER w AS keep_life, first_value(r.seq) OVER w AS keep_seq,
       first_value(r.value) OVER w AS keep_value, first_value(r.total) OVER w AS keep_total,
       first_value(r.interval_s) OVER w AS keep_interval_s, row_number() OVER w AS n
FROM meter_readings r
WHERE (r.household_id, r.meter, r.ts) IN (
    SELECT household_id, meter, ts FROM meter_readings GROUP BY 1, 2, 3 HAVING count(*) > 1)
WINDOW w AS (PARTITION BY r.household_id, r.meter, r.ts ORDER BY r.ingested_at, r.life, r.seq);

INSERT INTO duplicate_readings (device_id, meter, life, seq, household_id, ts, interval_s, usage_month,
                                stored_life, stored_seq, kafka_partition, kafka_offset)
SELECT device_id, meter, life, seq, household_id, ts, interval_s, usage_month, keep_life, keep_seq,
       kafka_partition, kafka_offset
FROM _ranked_0010 WHERE n > 1 AND value = keep_value AND total = keep_total AND interval_s = keep_interval_s;

-- Quarantine rows are keyed by Kafka coordinates; readings stored before those were recorded have none.
INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
SELECT 'migration 0010', COALESCE(kafka_partition, -1), COALESCE(kafka_offset, -row_number() OVER ()),
       'conflict: interval ' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '/'
       || interval_s || 's of ' || device_id || ' ' || meter || ' already stored as seq ' || keep_seq || ' life '
       || keep_life || ' value ' || trim_scale(keep_value) || ' total ' || trim_scale(keep_total) || '; this seq '
       || seq || ' life ' || life || ' value ' || trim_scale(value) || ' total ' || trim_scale(total),
       device_id, NULL
FROM _ranked_0010 WHERE n > 1 AND NOT (value = keep_value AND total = keep_total AND interval_s = keep_interval_s)
ON CONFLICT DO NOTHING;

DELETE FROM meter_readings r USING _ranked_0010 k
WHERE k.n > 1 AND r.device_id = k.device_id AND r.meter = k.meter AND r.life = k.life AND r.seq = k.seq;

-- The months those copies were summed into, recomputed from what is left.
UPDATE energy_usage u SET amount_exact = s.amount, amount = s.amount::float8,
       emission = (s.amount * COALESCE((
           SELECT ef.factor FROM emission_factors ef JOIN energy_types t ON t.key = ef.energy_type
           WHERE t.label_ko = u.energy_type AND ef.valid_from <= u.usage_date
           ORDER BY ef.valid_from DESC LIMIT 1), 0))::float8,
       reading_count = s.n, covered_s = s.covered, updated_at = now()
FROM (SELECT r.household_id, et.label_ko, r.usage_month, sum(r.value) AS amount, count(*) AS n,
             sum(r.interval_s) AS covered
      FROM meter_readings r JOIN energy_types et ON et.key = r.meter
      WHERE (r.household_id, r.meter, r.usage_month) IN (
          SELECT household_id, meter, usage_month FROM _ranked_0010 WHERE n > 1)
      GROUP BY 1, 2, 3) s
WHERE u.household_id = s.household_id AND u.energy_type = s.label_ko AND u.usage_date = s.usage_month;

DROP TABLE _ranked_0010;
DROP INDEX meter_readings_household_ts;
CREATE UNIQUE INDEX meter_readings_interval ON meter_readings (household_id, meter, ts);
