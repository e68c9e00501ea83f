-- What the stream job needs: raw readings keyed for idempotence, emission factors with effective
-- dates, device status, and a quarantine for input that cannot be used.

CREATE TABLE emission_factors (
    energy_type VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    valid_from  DATE NOT NULL,
    factor      NUMERIC(12, 6) NOT NULL CHECK (factor >= 0),
    unit        VARCHAR(40) NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (energy_type, valid_from)
);

-- One row per meter reading ever accepted; (device_id, meter, seq) makes every write idempotent.
CREATE TABLE meter_readings (
    device_id    VARCHAR(64) NOT NULL,
    meter        VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    seq          BIGINT NOT NULL CHECK (seq >= 0),
    household_id INTEGER NOT NULL REFERENCES households (id),
    ts           TIMESTAMPTZ NOT NULL,
    interval_s   INTEGER NOT NULL CHECK (interval_s > 0),
    value        NUMERIC(20, 6) NOT NULL CHECK (value >= 0),
    total        NUMERIC(24, 6) NOT NULL CHECK (total >= 0),
    usage_month  DATE NOT NULL,                 -- first day of the local (complex time zone) month
    kafka_partition INTEGER,
    kafka_offset    BIGINT,
    ingested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, meter, seq)
);
CREATE INDEX meter_readings_household_ts ON meter_readings (household_id, meter, ts);
CREATE INDEX meter_readings_ingested ON meter_readings (ingested_at);

CREATE TABLE devices (
    device_id    VARCHAR(64) PRIMARY KEY,
    household_id INTEGER REFERENCES households (id),
    state        VARCHAR(16) NOT NULL,
    firmware     VARCHAR(64),
    interval_s   INTEGER,
    meta         JSONB,
    last_seen    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Bad input never disappears: it lands here with where it came from and why.
CREATE TABLE quarantine (
    id              BIGSERIAL PRIMARY KEY,
    source_topic    VARCHAR(255) NOT NULL,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    device_id       VARCHAR(64),
    raw_payload     TEXT,
    received_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (source_topic, kafka_partition, kafka_offset)   -- replays do not duplicate
);
