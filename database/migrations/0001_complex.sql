-- The original design's three tables, with their exact columns and types, plus keys and checks.
-- Extensions (complex_id, device_id, energy_types, bookkeeping columns) only add to them.

CREATE TABLE buildings (
    id              SERIAL PRIMARY KEY,
    building_number INTEGER NOT NULL CHECK (building_number > 0),
    -- extensions: which complex, and its shape (what seeding created)
    complex_id      VARCHAR(32) NOT NULL,
    floors          INTEGER NOT NULL CHECK (floors > 0),
    units_per_floor INTEGER NOT NULL CHECK (units_per_floor > 0),
    UNIQUE (complex_id, building_number)
);

CREATE TABLE households (
    id          SERIAL PRIMARY KEY,
    building_id INTEGER NOT NULL REFERENCES buildings (id),
    floor       INTEGER NOT NULL CHECK (floor > 0),
    unit        INTEGER NOT NULL CHECK (unit > 0),
    -- extension: the household gateway that reports for it (MQTT client id, Kafka key)
    device_id   VARCHAR(64) NOT NULL UNIQUE,
    UNIQUE (building_id, floor, unit)
);

-- Extension: what energy_usage.energy_type may hold. The original stores the Korean name
-- (전력, 난방, 수도) in VARCHAR(10); everything else in the pipeline uses `key`.
CREATE TABLE energy_types (
    key      VARCHAR(20) PRIMARY KEY,
    label_ko VARCHAR(10) NOT NULL UNIQUE,
    label_en VARCHAR(40) NOT NULL,
    unit     VARCHAR(10) NOT NULL
);

CREATE TABLE energy_usage (
    id           SERIAL PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    energy_type  VARCHAR(10) NOT NULL REFERENCES energy_types (label_ko),
    usage_date   DATE NOT NULL CHECK (EXTRACT(DAY FROM usage_date) = 1),
    amount       DOUBLE PRECISION NOT NULL CHECK (amount >= 0),
    emission     DOUBLE PRECISION NOT NULL CHECK (emission >= 0),
    -- extensions: the exact sum behind `amount` (readings carry fixed decimals; NUMERIC adds them
    -- without rounding, so replays and reorderings cannot drift), how many readings and how much
    -- time they cover, last change
    amount_exact  NUMERIC(24, 6) NOT NULL DEFAULT 0 CHECK (amount_exact >= 0),
    reading_count INTEGER NOT NULL DEFAULT 0 CHECK (reading_count >= 0),
    covered_s     BIGINT NOT NULL DEFAULT 0 CHECK (covered_s >= 0),   -- seconds of readings summed
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (household_id, energy_type, usage_date)
);
CREATE INDEX energy_usage_month ON energy_usage (usage_date, energy_type);
