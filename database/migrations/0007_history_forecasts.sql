-- Imported history (monthly usage from the previous metering system) is stored in energy_usage like
-- streamed months, so bills and forecasts read one table; this marker says which rows were imported.
CREATE TABLE usage_imports (
    household_id INTEGER NOT NULL REFERENCES households (id),
    energy_type  VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    usage_date   DATE NOT NULL,
    source       VARCHAR(40) NOT NULL,          -- e.g. simulated-history (edge/profile.py, seed 42)
    batch        UUID NOT NULL,
    imported_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (household_id, energy_type, usage_date)
);

-- Forecasts per series (household, building or complex total) and target month.
CREATE TABLE usage_forecasts (
    level        VARCHAR(10) NOT NULL CHECK (level IN ('household', 'building', 'complex')),
    series_id    VARCHAR(64) NOT NULL,          -- device id, building number, or complex id
    energy_type  VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    target_month DATE NOT NULL,
    model        VARCHAR(20) NOT NULL,
    horizon      SMALLINT NOT NULL CHECK (horizon BETWEEN 1 AND 12),
    point        DOUBLE PRECISION NOT NULL,
    lo80 DOUBLE PRECISION NOT NULL, hi80 DOUBLE PRECISION NOT NULL,
    lo95 DOUBLE PRECISION NOT NULL, hi95 DOUBLE PRECISION NOT NULL,
    issued_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (level, series_id, energy_type, target_month, model, issued_at)
);
CREATE INDEX usage_forecasts_target ON usage_forecasts (target_month, energy_type, level);

CREATE TABLE forecast_backtests (
    run_at       TIMESTAMPTZ NOT NULL,
    level        VARCHAR(10) NOT NULL,
    energy_type  VARCHAR(20) NOT NULL,
    model        VARCHAR(20) NOT NULL,
    windows      INTEGER NOT NULL,
    series       INTEGER NOT NULL,
    mase         DOUBLE PRECISION, smape DOUBLE PRECISION, bias_pct DOUBLE PRECISION,
    coverage80   DOUBLE PRECISION, coverage95 DOUBLE PRECISION,
    PRIMARY KEY (run_at, level, energy_type, model)
);
