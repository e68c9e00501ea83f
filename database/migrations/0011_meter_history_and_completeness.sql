-- Meter history and month completeness (issue 21).
--
-- meter_lives: which register belonged to which physical meter, from when. A replaced (or reset) meter
-- continues under a new per-meter `life`: seq from 0, its register starting at the new meter's start
-- value. The stream job's merge keeps one row per (device, meter, life) from the readings it stores
-- (first interval's start and the register there, i.e. its total minus its value; last interval's end and
-- its total), and the devices query fills `serial` and `since` from the retained meta's meters list.
CREATE TABLE meter_lives (
    device_id            VARCHAR(64) NOT NULL,
    meter                VARCHAR(20) NOT NULL,
    life                 BIGINT NOT NULL,
    first_interval_start TIMESTAMPTZ,          -- NULL until a reading of this life is stored (meta first)
    first_register       NUMERIC(24, 6),
    last_interval_end    TIMESTAMPTZ,
    last_register        NUMERIC(24, 6),
    serial               VARCHAR(64),
    since                TIMESTAMPTZ,          -- when the gateway says this meter was installed
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, meter, life)
);

-- The complex's time zone, so SQL can turn a local usage month into instants (seeded from config).
CREATE TABLE complexes (
    complex_id VARCHAR(32) PRIMARY KEY,
    timezone   TEXT NOT NULL
);

-- For each household × meter × local month: how many seconds of readings it expects and has.
--   expected_s: from the later of the month's start and the start of the household meter's first stored
--   interval, to the earlier of the month's end and the end of the complex's latest stored reading (so the
--   month in progress expects only what the complex has reached). Months from the household meter's
--   first to the complex's latest appear, the ones without any reading too (measured_s 0).
--   measured_s: the seconds of readings summed into energy_usage for that month (duplicates are not).
-- Readings of any interval length count by their seconds.
CREATE VIEW month_completeness AS
WITH span AS (
    SELECT h.id AS household_id, l.meter, c.timezone, min(l.first_interval_start) AS first_start,
           max(l.last_interval_end) AS last_end
    FROM meter_lives l JOIN households h ON h.device_id = l.device_id
    JOIN buildings b ON b.id = h.building_id JOIN complexes c ON c.complex_id = b.complex_id
    WHERE l.first_interval_start IS NOT NULL
    GROUP BY h.id, l.meter, c.timezone
), reach AS (
    SELECT b.complex_id, max(l.last_interval_end) AS latest
    FROM meter_lives l JOIN households h ON h.device_id = l.device_id JOIN buildings b ON b.id = h.building_id
    GROUP BY b.complex_id
), months AS (
    SELECT s.household_id, s.meter, s.timezone, s.first_start, r.latest,
           m::date AS usage_month
    FROM span s JOIN households h ON h.id = s.household_id JOIN buildings b ON b.id = h.building_id
    JOIN reach r ON r.complex_id = b.complex_id
    CROSS JOIN LATERAL generate_series(
        date_trunc('month', (s.first_start AT TIME ZONE s.timezone) + interval '1 second'),
        date_trunc('month', (r.latest - interval '1 second') AT TIME ZONE s.timezone),
        interval '1 month') AS m
)
SELECT m.household_id, m.meter::varchar(20) AS meter, m.usage_month,
       GREATEST(0, extract(epoch FROM
           LEAST((m.usage_month + interval '1 month')::timestamp AT TIME ZONE m.timezone, m.latest)
           - GREATEST(m.usage_month::timestamp AT TIME ZONE m.timezone, m.first_start)))::bigint AS expected_s,
       COALESCE(u.covered_s, 0)::bigint AS measured_s
FROM months m
JOIN energy_types et ON et.key = m.meter
LEFT JOIN energy_usage u ON u.household_id = m.household_id AND u.energy_type = et.label_ko
     AND u.usage_date = m.usage_month;
