-- Alerts (one per event) and their Slack deliveries (an outbox, written in the same transaction).

CREATE TABLE alerts (
    id           BIGSERIAL PRIMARY KEY,
    household_id INTEGER NOT NULL REFERENCES households (id),
    energy_type  VARCHAR(20) NOT NULL REFERENCES energy_types (key),
    period       DATE NOT NULL,          -- month start for monthly rules, the night's date for night_flow
    rule         VARCHAR(32) NOT NULL,
    severity     VARCHAR(10) NOT NULL CHECK (severity IN ('warning', 'critical')),
    observed     DOUBLE PRECISION NOT NULL,
    reference    DOUBLE PRECISION NOT NULL,
    unit         VARCHAR(10) NOT NULL,
    state        VARCHAR(10) NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'resolved')),
    raised_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at  TIMESTAMPTZ,
    detail       JSONB NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (household_id, energy_type, period, rule)
);
CREATE INDEX alerts_raised ON alerts (raised_at DESC);

CREATE TABLE alert_notifications (
    id          BIGSERIAL PRIMARY KEY,
    alert_id    BIGINT NOT NULL REFERENCES alerts (id),
    kind        VARCHAR(10) NOT NULL CHECK (kind IN ('raised', 'resolved')),
    -- pending → sending (claimed; the send is in doubt until marked) → sent | console | failed
    state       VARCHAR(10) NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sending', 'sent', 'console', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    slack_ts    VARCHAR(32),
    channel     VARCHAR(80),
    last_error  TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at     TIMESTAMPTZ,
    UNIQUE (alert_id, kind)
);
CREATE INDEX alert_notifications_open ON alert_notifications (state) WHERE state IN ('pending', 'sending');
