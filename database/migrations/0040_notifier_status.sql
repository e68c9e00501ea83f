-- What each running notifier is actually doing, for the operator: its transport and destination (the
-- notifier's own environment, not the CLI's), a heartbeat, and the problem it cannot get past with the
-- fix in one line (e.g. in-doubt posts that cannot be checked because the bot cannot read the channel).
-- `apt-energy alerts`, `apt-energy pipeline status` and the alerts dashboard read it.
CREATE TABLE notifier_status (
    owner         VARCHAR(80) PRIMARY KEY,
    transport     VARCHAR(10) NOT NULL CHECK (transport IN ('bot', 'webhook', 'console')),
    destination   TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    stopped_at    TIMESTAMPTZ,                  -- a clean stop; a crashed notifier's heartbeat just ages
    in_doubt      INTEGER NOT NULL DEFAULT 0,   -- rows it holds in doubt (sending, history not read yet)
    problem       TEXT,                         -- NULL: healthy
    fix           TEXT,
    problem_since TIMESTAMPTZ
);
