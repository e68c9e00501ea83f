-- Bills per household-month and energy type, with the lines of the calculation (exact NUMERIC, KRW).
-- Recomputed from energy_usage by `apt-energy bills compute` whenever usage changed after the bill
-- (usage_updated_at lags energy_usage.updated_at).

CREATE TABLE bills (
    id               BIGSERIAL PRIMARY KEY,
    household_id     INTEGER NOT NULL REFERENCES households (id),
    energy_type      VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    usage_month      DATE NOT NULL CHECK (EXTRACT(DAY FROM usage_month) = 1),
    usage            NUMERIC(24, 6) NOT NULL CHECK (usage >= 0),
    billed_quantity  NUMERIC(24, 6) NOT NULL,
    tier             SMALLINT CHECK (tier BETWEEN 1 AND 3),      -- electricity's progressive tier
    total_krw        NUMERIC(14, 0) NOT NULL,
    usage_updated_at TIMESTAMPTZ NOT NULL,                       -- energy_usage.updated_at billed
    computed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (household_id, energy_type, usage_month)
);
CREATE INDEX bills_month ON bills (usage_month, energy_type);

CREATE TABLE bill_lines (
    bill_id   BIGINT NOT NULL REFERENCES bills (id) ON DELETE CASCADE,
    line_no   SMALLINT NOT NULL,
    code      VARCHAR(20) NOT NULL,
    label     VARCHAR(40) NOT NULL,
    quantity  NUMERIC(24, 6) NOT NULL,
    rate      NUMERIC(20, 8) NOT NULL,
    amount    NUMERIC(14, 0) NOT NULL,
    PRIMARY KEY (bill_id, line_no)
);
