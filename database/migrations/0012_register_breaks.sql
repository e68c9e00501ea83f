-- Register continuity (issue 21): within one (device, meter, life), each reading's register (`total`)
-- must step from its neighbour in time by the reading's value. The merge records every pair of
-- neighbouring readings that does not: 'backwards' (the register went down), 'step' (it moved by another
-- amount than the interval's value, or, across missing intervals, by less than it), and 'gap' (intervals
-- missing in between: the register jumped by their consumption, `step - value`; not an error).
-- Readings are flagged here, not held back: usage is always summed from interval values, never from
-- register differences, so a broken register changes no sum, and holding its reading back would lose
-- a measurement the month needs (it would show as missing in month_completeness).
CREATE TABLE register_breaks (
    device_id   VARCHAR(64) NOT NULL,
    meter       VARCHAR(20) NOT NULL,
    life        BIGINT NOT NULL,
    seq         BIGINT NOT NULL,              -- the later reading of the pair
    prev_seq    BIGINT NOT NULL,              -- the earlier one
    kind        VARCHAR(16) NOT NULL CHECK (kind IN ('backwards', 'step', 'gap')),
    ts          TIMESTAMPTZ NOT NULL,         -- the later reading's interval end
    step        NUMERIC(24, 6) NOT NULL,      -- its register minus the earlier one's
    value       NUMERIC(20, 6) NOT NULL,      -- its interval's value
    missing_s   BIGINT NOT NULL,              -- seconds between the two intervals
    found_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, meter, life, seq, prev_seq)
);
