-- Month-end projections of each household's bill (billing/store.py `project`): usage so far plus the
-- latest forecast's share of the days left (the same projection the stream job's `projection` alert
-- rule makes), billed with the tariffs of the month. Recomputed by `apt-energy bills compute`; the
-- dashboards show the projected bill of the month that holds the end of their time range.
CREATE TABLE bill_projections (
    household_id       INTEGER NOT NULL REFERENCES households (id),
    energy_type        VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    usage_month        DATE NOT NULL CHECK (EXTRACT(DAY FROM usage_month) = 1),
    so_far             NUMERIC(24, 6) NOT NULL CHECK (so_far >= 0),
    days_elapsed       DOUBLE PRECISION NOT NULL,     -- event time: where the month's latest reading ends
    forecast           DOUBLE PRECISION NOT NULL,     -- the month's forecast total (usage_forecasts.point)
    model              VARCHAR(20) NOT NULL,
    forecast_issued_at TIMESTAMPTZ NOT NULL,
    projected          NUMERIC(24, 6) NOT NULL,
    tier               SMALLINT CHECK (tier BETWEEN 1 AND 3),   -- electricity's projected tier
    total_krw          NUMERIC(14, 0) NOT NULL,
    computed_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (household_id, energy_type, usage_month)
);
CREATE INDEX bill_projections_month ON bill_projections (usage_month, energy_type);
