-- Sequence reuse made visible, and the stream job's shared staging table.
--
-- A gateway that lost its seq state starts a new `life` and counts seq from 0 again, so a reading is
-- identified by (device_id, meter, life, seq). The sink inserts ON CONFLICT DO NOTHING on that key and
-- quarantines ('reused seq') an incoming reading whose key is stored with another value or ts.
ALTER TABLE meter_readings ADD COLUMN life BIGINT NOT NULL DEFAULT 0;
ALTER TABLE meter_readings DROP CONSTRAINT meter_readings_pkey;
ALTER TABLE meter_readings ADD PRIMARY KEY (device_id, meter, life, seq);

-- Spark executors COPY each partition of a micro-batch here, keyed by (stream, batch); one driver
-- transaction merges the batch into meter_readings/energy_usage and deletes its rows. Nothing here
-- outlives its batch, so it is UNLOGGED (no WAL): after a crash it is empty, and the batch is replayed
-- from Kafka anyway. Columns are loose (no NOT NULL, no checks) so staging never refuses a parsed row;
-- the merge finds what the real tables refuse.
CREATE UNLOGGED TABLE reading_staging (
    stream_id       BIGINT NOT NULL,
    batch_id        BIGINT NOT NULL,
    device_id       TEXT,
    meter           TEXT,
    life            BIGINT,
    seq             BIGINT,
    ts              TIMESTAMPTZ,
    interval_s      INTEGER,
    value           NUMERIC(20, 6),
    total           NUMERIC(24, 6),
    unit            TEXT,
    usage_month     DATE,
    topic           TEXT,
    kafka_partition INTEGER,
    kafka_offset    BIGINT,
    reason          TEXT,
    raw             TEXT,
    received_ms     BIGINT
);
CREATE INDEX reading_staging_batch ON reading_staging (stream_id, batch_id);
