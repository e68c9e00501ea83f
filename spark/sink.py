"""The exact PostgreSQL sink: one transaction per micro-batch, COPY into a temp table, set-based SQL.

Two identities
--------------
A reading's identity for *transport* is (device_id, meter, life, seq); its identity as a *measurement*
is the meter and the interval it covers (interval end ``ts`` and ``interval_s``). The merge judges each
good reading of a batch (``_JUDGE``, one index probe per reading) and gives it one verdict:

* **replay** — its transport key is stored (a Kafka replay after a crash, a duplicating producer): silent,
  counted nowhere, so replaying the same offsets any number of times changes nothing. A stored key with
  another value or ts is a reused seq (a gateway that lost its counter without starting a new ``life``),
  quarantined as ``reused seq`` as before.
* **duplicate** — the same interval is stored under another seq or life with the same value and register
  (a restarted gateway re-sending its buffer, a reset sequence): not stored, not summed, counted once per
  transport key in ``duplicate_readings`` (so a replay of the duplicate does not count again).
* **conflict** — the same interval is stored with another value or register: quarantined with a reason
  naming both readings (``conflict: interval 2024-03-01T01:00:00Z/3600s of hanbit-01-1001 water already
  stored as seq 17 life 5 value 0.012 total 3.1; this seq 93 life 6 value 0.02 total 3.2``). The first
  stored reading stands: there is no revision policy.
* **overlap** — the interval overlaps a stored one of another length or alignment: quarantined the same way.
* **new** — inserted into ``meter_readings`` (unique on the interval end per meter) and added to
  ``energy_usage`` (exact NUMERIC sums); its meter's row in ``meter_lives`` follows.

Inside one batch the first record of an interval (Kafka order) is the candidate and later ones are
duplicates or conflicts of it; an interval overlapping an earlier-ending one of the same batch is an
overlap. Bad records go to ``quarantine`` (keyed by their Kafka coordinates, so a replay does not
duplicate them). Alerts for the rows the batch changed are written in the same transaction, with their
Slack delivery queued in the outbox.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

import psycopg
from apt_energy.config.settings import Rules
from apt_energy.spark import rules
from apt_energy.spark.poison import find_poison, is_data_error, printable, probe, rejection
from apt_energy.spark.rules import ProjectionOptions
from apt_energy.spark.staging import STAGED_COLUMNS, BatchKey
from psycopg.rows import class_row

from apt_energy.contract import Reason

logger = logging.getLogger(__name__)

_STAGING_DDL = """
CREATE TEMP TABLE staging (
    device_id TEXT, meter TEXT, life BIGINT, seq BIGINT, ts TIMESTAMPTZ, interval_s INTEGER, value NUMERIC(20, 6),
    total NUMERIC(24, 6), unit TEXT, usage_month DATE, topic TEXT, kafka_partition INTEGER,
    kafka_offset BIGINT, reason TEXT, raw TEXT, received_ms BIGINT
) ON COMMIT DROP
"""

# Returns (bad records in this batch, of which newly quarantined: a replay finds them there already).
_QUARANTINE = """
WITH bad AS (
    SELECT s.topic, s.kafka_partition, s.kafka_offset,
           COALESCE(s.reason, CASE WHEN h.id IS NULL THEN 'unknown device ' || left(s.device_id, 64)
                                   ELSE 'unknown meter ' || left(s.meter, 20) END) AS reason,
           left(s.device_id, 64) AS device_id, s.raw
    FROM staging s LEFT JOIN households h ON h.device_id = s.device_id LEFT JOIN energy_types t ON t.key = s.meter
    WHERE s.reason IS NOT NULL OR h.id IS NULL OR t.key IS NULL
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM bad
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM bad) AS bad, (SELECT count(*) FROM ins) AS new
"""

# After _APPLY: good readings whose key is stored with another value or ts (by an earlier batch, or by
# another record of this one) reuse a seq. An identical replay matches its stored row and stays silent.
# Duplicates, conflicts and overlaps were judged already (``judged``): only the others are looked at here.
_REUSED = """
WITH reused AS (
    SELECT s.topic, s.kafka_partition, s.kafka_offset, 'reused seq' AS reason, left(s.device_id, 64) AS device_id,
           s.raw
    FROM staging s
    JOIN meter_readings m ON m.device_id = s.device_id AND m.meter = s.meter AND m.life = s.life AND m.seq = s.seq
    WHERE s.reason IS NULL AND (m.value IS DISTINCT FROM s.value OR m.ts IS DISTINCT FROM s.ts)
      AND NOT EXISTS (SELECT 1 FROM judged j WHERE j.topic = s.topic AND j.kafka_partition = s.kafka_partition
                      AND j.kafka_offset = s.kafka_offset AND j.verdict NOT IN ('new', 'replay'))
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM reused
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM reused) AS bad, (SELECT count(*) FROM ins) AS new
"""

_STAGED_COLUMNS = ", ".join(STAGED_COLUMNS[2:])   # the record's columns, without its batch key

# One batch of reading_staging (filled by the executors) into this transaction's temp staging table.
_LOAD_STAGED = f"""
INSERT INTO staging ({_STAGED_COLUMNS})
SELECT {_STAGED_COLUMNS} FROM reading_staging WHERE stream_id = %s AND batch_id = %s
"""

# ... or only some of its records (bisection), by Kafka coordinates.
_LOAD_STAGED_SUBSET = _LOAD_STAGED + """
  AND (kafka_partition, kafka_offset) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))
"""

_STAGED_KEYS = """
SELECT kafka_partition, kafka_offset FROM reading_staging WHERE stream_id = %s AND batch_id = %s ORDER BY 1, 2
"""

# Refused records keep only their quarantine entry (a validation reason, if they had one, wins).
_MARK_REFUSED = """
UPDATE reading_staging s SET reason = COALESCE(s.reason, r.reason)
FROM unnest(%s::int[], %s::bigint[], %s::text[]) AS r(kafka_partition, kafka_offset, reason)
WHERE s.stream_id = %s AND s.batch_id = %s AND s.kafka_partition = r.kafka_partition
  AND s.kafka_offset = r.kafka_offset
"""

_DELETE_STAGED = "DELETE FROM reading_staging WHERE stream_id = %s AND batch_id = %s"

_COUNT_STAGED = "SELECT count(*) FROM reading_staging WHERE stream_id = %s AND batch_id = %s"

def _utc(column: str) -> str:
    """SQL: a timestamptz column as the reason texts write instants (UTC, ISO-8601, Z)."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')"""


def _reading(label: str, prefix: str = "") -> str:
    """SQL: 'already stored as seq 17 life 5 value 0.012 total 3.1' of a judged row's columns."""
    return (f"' {label} seq ' || {prefix}seq || ' life ' || {prefix}life || ' value ' || trim_scale({prefix}value)"
            f" || ' total ' || trim_scale({prefix}total)").replace("' this seq", "'this seq")


_this_interval = f"'interval ' || {_utc('ts')} || '/' || interval_s || 's of ' || device_id || ' ' || meter"

# Each good reading of the batch judged by its measurement identity (see the module docstring): a
# temp table the merge's next statements read. ``verdict`` is new | replay | duplicate | conflict | overlap;
# ``detail`` names both readings for the quarantine reason.
_JUDGE = f"""
CREATE TEMP TABLE judged ON COMMIT DROP AS
WITH good AS (
    -- only what the verdicts, the inserts and the reasons need: the raw payload stays in staging (a wide
    -- temp table spills past temp_buffers), fetched back for the few readings quarantined
    SELECT DISTINCT ON (s.device_id, s.meter, s.life, s.seq) s.device_id, s.meter, s.life, s.seq, s.ts,
           s.interval_s, s.value, s.total, s.usage_month, s.topic, s.kafka_partition, s.kafka_offset,
           h.id AS household_id
    FROM staging s JOIN households h ON h.device_id = s.device_id
    JOIN energy_types t ON t.key = s.meter  -- meter_readings has no foreign keys: these joins are its checks
    WHERE s.reason IS NULL
    ORDER BY s.device_id, s.meter, s.life, s.seq, s.kafka_partition, s.kafka_offset
), met AS (
    -- The first stored reading of the meter that ends after this one starts: stored readings never
    -- overlap, so if that one does not overlap this interval, none does.
    SELECT g.*, m.life AS m_life, m.seq AS m_seq, m.ts AS m_ts, m.interval_s AS m_interval_s,
           m.value AS m_value, m.total AS m_total
    FROM good g LEFT JOIN LATERAL (
        SELECT r.life, r.seq, r.ts, r.interval_s, r.value, r.total FROM meter_readings r
        WHERE r.household_id = g.household_id AND r.meter = g.meter AND r.ts > g.ts - g.interval_s * interval '1 second'
        ORDER BY r.ts LIMIT 1) m ON m.ts - m.interval_s * interval '1 second' < g.ts
), ranked AS (
    -- Among this batch's readings of intervals not stored yet: the first record (Kafka order) of an
    -- interval end is the candidate; a later-ending one overlapping an earlier one of the batch is refused.
    SELECT met.*,
           first_value(life) OVER same AS f_life, first_value(seq) OVER same AS f_seq,
           first_value(interval_s) OVER same AS f_interval_s, first_value(value) OVER same AS f_value,
           first_value(total) OVER same AS f_total, row_number() OVER same AS nth,
           max(ts) OVER prior AS prior_end
    FROM met WHERE m_ts IS NULL
    WINDOW same AS (PARTITION BY household_id, meter, ts ORDER BY kafka_partition, kafka_offset),
           prior AS (PARTITION BY household_id, meter ORDER BY ts, kafka_partition, kafka_offset
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), verdicts AS (
    SELECT met.*, NULL::bigint AS f_life, NULL::bigint AS f_seq, NULL::int AS f_interval_s, NULL::numeric AS f_value,
           NULL::numeric AS f_total, NULL::bigint AS nth, NULL::timestamptz AS prior_end,
           CASE WHEN (m_life, m_seq) = (life, seq) THEN 'replay'        -- the same record again (or a reused seq)
                WHEN m_ts <> ts OR m_interval_s <> interval_s THEN '{Reason.OVERLAP.value}'
                WHEN m_value = value AND m_total = total THEN 'duplicate'
                ELSE '{Reason.CONFLICT.value}' END AS verdict
    FROM met WHERE m_ts IS NOT NULL
    UNION ALL
    SELECT ranked.*,
           CASE WHEN nth = 1 AND prior_end > ts - interval_s * interval '1 second' THEN '{Reason.OVERLAP.value}'
                WHEN nth = 1 THEN 'new'
                WHEN f_interval_s <> interval_s THEN '{Reason.OVERLAP.value}'
                WHEN f_value = value AND f_total = total THEN 'duplicate'
                ELSE '{Reason.CONFLICT.value}' END
    FROM ranked
)
SELECT v.*, CASE
    WHEN verdict = 'new' THEN NULL
    WHEN nth IS NULL THEN  -- against a stored reading
        {_this_interval}
        || CASE WHEN verdict = '{Reason.OVERLAP.value}'
                THEN ' overlaps ' || {_utc("m_ts")} || '/' || m_interval_s || 's' ELSE '' END
        || {_reading("already stored as", "m_")} || '; ' || {_reading("this")}
    WHEN nth = 1 THEN      -- overlapping an earlier-ending reading of this batch
        {_this_interval} || ' overlaps a reading of the same batch ending ' || {_utc("prior_end")}
        || '; ' || {_reading("this")}
    ELSE                   -- the same interval end as the batch's first record of it
        {_this_interval}
        || CASE WHEN verdict = '{Reason.OVERLAP.value}' THEN ' overlaps the same end /' || f_interval_s || 's'
                ELSE '' END
        || {_reading("already stored as", "f_")} || '; ' || {_reading("this")}
    END AS detail
FROM verdicts v
"""

# Register continuity (spark/register.py's judge_step, as SQL) for the judged new readings, before they are
# stored: each against its predecessor in time within (device, meter, life) — the batch's own when it ends
# exactly where this one starts, else the latest stored reading ending at or before its start — and,
# for readings arriving after their successor, against the first stored one starting at or after its
# end. Stored lookups happen only at a batch run's edges (once per meter and batch in a steady stream).
_REGISTER = """
WITH c AS (
    SELECT device_id, household_id, meter, life, seq, ts, interval_s, value, total,
           ts - interval_s * interval '1 second' AS start,
           lag(ts) OVER w AS b_ts, lag(total) OVER w AS b_total, lag(seq) OVER w AS b_seq,
           lead(ts - interval_s * interval '1 second') OVER w AS a_start
    FROM judged WHERE verdict = 'new'
    WINDOW w AS (PARTITION BY household_id, meter, life ORDER BY ts)
), before AS (
    SELECT c.*, p.life AS p_life, p.ts AS p_ts, p.total AS p_total, p.seq AS p_seq
    FROM c LEFT JOIN LATERAL (
        SELECT r.life, r.ts, r.total, r.seq FROM meter_readings r
        WHERE r.household_id = c.household_id AND r.meter = c.meter AND r.ts <= c.start
        ORDER BY r.ts DESC LIMIT 1) p ON true
    WHERE c.b_ts IS DISTINCT FROM c.start
), after AS (
    SELECT c.*, n.life AS n_life, n.ts AS n_ts, n.interval_s AS n_interval_s, n.total AS n_total,
           n.value AS n_value, n.seq AS n_seq
    FROM c JOIN LATERAL (
        SELECT r.life, r.ts, r.interval_s, r.total, r.value, r.seq FROM meter_readings r
        WHERE r.household_id = c.household_id AND r.meter = c.meter AND r.ts > c.ts
        ORDER BY r.ts LIMIT 1) n ON true
    WHERE c.a_start IS DISTINCT FROM c.ts
), pairs AS (   -- (earlier, later) readings of one life: seq and ts of each, the later one's value
    SELECT device_id, meter, life, b_seq AS prev_seq, b_ts AS prev_ts, b_total AS prev_total, seq, start, ts,
           value, total FROM c WHERE b_ts = start
    UNION ALL
    SELECT device_id, meter, life, p_seq, p_ts, p_total, seq, start, ts, value, total FROM before
    WHERE p_life = life AND (b_ts IS NULL OR p_ts > b_ts)
    UNION ALL
    SELECT device_id, meter, life, b_seq, b_ts, b_total, seq, start, ts, value, total FROM before
    WHERE b_ts IS NOT NULL AND NOT COALESCE(p_life = life AND p_ts > b_ts, false)
    UNION ALL
    SELECT device_id, meter, life, seq, ts, total, n_seq, n_ts - n_interval_s * interval '1 second', n_ts,
           n_value, n_total FROM after
    WHERE n_life = life AND (a_start IS NULL OR n_ts - n_interval_s * interval '1 second' < a_start)
), judged_pairs AS (
    SELECT p.*, total - prev_total AS step, extract(epoch FROM start - prev_ts)::bigint AS missing_s FROM pairs p
), breaks AS (
    INSERT INTO register_breaks (device_id, meter, life, seq, prev_seq, kind, ts, step, value, missing_s)
    SELECT device_id, meter, life, seq, prev_seq,
           CASE WHEN step < 0 THEN 'backwards' WHEN missing_s = 0 OR step < value THEN 'step' ELSE 'gap' END,
           ts, step, value, missing_s
    FROM judged_pairs
    WHERE step < 0 OR missing_s > 0 OR step <> value
    ON CONFLICT DO NOTHING
    RETURNING kind
)
SELECT count(*) FILTER (WHERE kind <> 'gap') AS breaks, count(*) FILTER (WHERE kind = 'gap') AS gaps FROM breaks
"""


# The judged new readings → meter_readings → energy_usage, returning each changed month with its
# month-to-date before and after this batch; the meter's life in meter_lives follows what was stored.
# ON CONFLICT without a target: a reused seq (its key stored at another time) is left for _REUSED.
_APPLY = """
WITH new AS (
    INSERT INTO meter_readings (device_id, meter, life, seq, household_id, ts, interval_s, value, total,
                                usage_month, kafka_partition, kafka_offset)
    SELECT device_id, meter, life, seq, household_id, ts, interval_s, value, total, usage_month, kafka_partition,
           kafka_offset
    FROM judged WHERE verdict = 'new'
    ON CONFLICT DO NOTHING
    RETURNING household_id, device_id, meter, life, usage_month, ts, value, total, interval_s
), lives AS (
    INSERT INTO meter_lives AS l (device_id, meter, life, first_interval_start, first_register, last_interval_end,
                                  last_register)
    SELECT device_id, meter, life, min(ts - interval_s * interval '1 second'),
           (array_agg(total - value ORDER BY ts))[1], max(ts), (array_agg(total ORDER BY ts DESC))[1]
    FROM new GROUP BY device_id, meter, life
    ON CONFLICT (device_id, meter, life) DO UPDATE SET
        first_register = CASE WHEN l.first_interval_start IS NULL
                                OR EXCLUDED.first_interval_start < l.first_interval_start
                              THEN EXCLUDED.first_register ELSE l.first_register END,
        first_interval_start = LEAST(l.first_interval_start, EXCLUDED.first_interval_start),
        last_register = CASE WHEN l.last_interval_end IS NULL OR EXCLUDED.last_interval_end > l.last_interval_end
                             THEN EXCLUDED.last_register ELSE l.last_register END,
        last_interval_end = GREATEST(l.last_interval_end, EXCLUDED.last_interval_end),
        updated_at = now()
), agg AS (
    SELECT household_id, meter, usage_month, sum(value) AS amount, count(*) AS n, sum(interval_s) AS covered
    FROM new GROUP BY household_id, meter, usage_month
), up AS (
    INSERT INTO energy_usage AS u (household_id, energy_type, usage_date, amount, emission, amount_exact,
                                   reading_count, covered_s)
    SELECT a.household_id, et.label_ko, a.usage_month, a.amount::float8,
           (a.amount * COALESCE(f.factor, 0))::float8, a.amount, a.n, a.covered
    FROM agg a
    JOIN energy_types et ON et.key = a.meter
    LEFT JOIN LATERAL (
        SELECT ef.factor FROM emission_factors ef
        WHERE ef.energy_type = a.meter AND ef.valid_from <= a.usage_month
        ORDER BY ef.valid_from DESC LIMIT 1) f ON true
    ON CONFLICT (household_id, energy_type, usage_date) DO UPDATE SET
        amount_exact = u.amount_exact + EXCLUDED.amount_exact,
        amount = (u.amount_exact + EXCLUDED.amount_exact)::float8,
        emission = ((u.amount_exact + EXCLUDED.amount_exact) * COALESCE((
            SELECT ef.factor FROM emission_factors ef JOIN energy_types t ON t.key = ef.energy_type
            WHERE t.label_ko = u.energy_type AND ef.valid_from <= u.usage_date
            ORDER BY ef.valid_from DESC LIMIT 1), 0))::float8,
        reading_count = u.reading_count + EXCLUDED.reading_count,
        covered_s = u.covered_s + EXCLUDED.covered_s,
        updated_at = now()
    RETURNING u.household_id, u.energy_type, u.usage_date, u.amount_exact, u.covered_s
)
SELECT up.household_id, a.meter AS energy_type, up.usage_date AS month, up.amount_exact - a.amount AS before,
       up.amount_exact AS after, up.covered_s, a.n AS inserted, h.building_id
FROM up
JOIN energy_types et ON et.label_ko = up.energy_type
JOIN agg a ON a.household_id = up.household_id AND a.meter = et.key AND a.usage_month = up.usage_date
JOIN households h ON h.id = up.household_id
"""

# Duplicates are counted (once per transport identity, so a replay adds nothing) and conflicts and
# overlaps quarantined with the reason naming both readings. Returns the batch's counts.
_SET_ASIDE = """
WITH dup AS (
    INSERT INTO duplicate_readings (device_id, meter, life, seq, household_id, ts, interval_s, usage_month,
                                    stored_life, stored_seq, kafka_partition, kafka_offset)
    SELECT device_id, meter, life, seq, household_id, ts, interval_s, usage_month, COALESCE(m_life, f_life),
           COALESCE(m_seq, f_seq), kafka_partition, kafka_offset
    FROM judged WHERE verdict = 'duplicate'
    ON CONFLICT (device_id, meter, life, seq) DO NOTHING
    RETURNING 1
), bad AS (
    SELECT j.topic, j.kafka_partition, j.kafka_offset, j.verdict || ': ' || j.detail AS reason,
           left(j.device_id, 64) AS device_id, s.raw
    FROM judged j JOIN staging s USING (topic, kafka_partition, kafka_offset)
    WHERE j.verdict NOT IN ('new', 'replay', 'duplicate')
), ins AS (
    INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
    SELECT * FROM bad
    ON CONFLICT (source_topic, kafka_partition, kafka_offset) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM bad) AS bad, (SELECT count(*) FROM ins) AS new,
       (SELECT count(*) FROM judged WHERE verdict = 'duplicate') AS duplicates,
       (SELECT count(*) FROM dup) AS new_duplicates
"""


class StagedReading(NamedTuple):
    """One parsed Kafka record of the readings topic (``transforms.parse_readings`` plus ``life``)."""

    device_id: str | None
    meter: str | None
    life: int | None
    seq: int | None
    ts: str | None
    interval_s: int | None
    value: Decimal | None
    total: Decimal | None
    unit: str | None
    usage_month: date | None
    topic: str
    partition: int
    offset: int
    reason: str | None
    raw: str | None
    received_ms: int | None

    def quarantined(self, reason: str) -> StagedReading:
        """This record as a quarantine entry only: its Kafka coordinates, device and payload (made
        storable) and a reason — the validation's if it had one (the database then refused only the
        raw bytes), else ``reason``; nothing else of it reaches a table."""
        return StagedReading(printable(self.device_id), None, None, None, None, None, None, None, None, None,
                             self.topic,
                             self.partition, self.offset, self.reason or reason, printable(self.raw),
                             self.received_ms)


class MonthChange(NamedTuple):
    """One energy_usage row a batch changed (what the rules see)."""

    household_id: int
    energy_type: str          # the meter key
    month: date
    before: Decimal           # month-to-date before this batch
    after: Decimal
    covered_s: int            # seconds of readings summed into the month
    inserted: int             # readings this batch added to it
    building_id: int


class PeerAmount(NamedTuple):
    building_id: int
    meter: str
    month: date
    household_id: int
    amount: float


class TouchedNight(NamedTuple):
    household_id: int
    meter: str
    night: date


class NightReading(NamedTuple):
    household_id: int
    meter: str
    night: date
    ts: datetime
    interval_s: int
    value: Decimal


class ActiveLeak(NamedTuple):
    id: int
    household_id: int
    energy_type: str
    period: date


class Counts(NamedTuple):
    bad: int
    new: int


class SetAside(NamedTuple):
    """What the measurement identity set aside in one batch."""

    bad: int               # conflicts and overlaps (quarantined)
    new: int               # of which not quarantined before (a replay finds them there)
    duplicates: int        # repeats of a stored interval (not stored, not summed)
    new_duplicates: int    # of which counted now (a replay of the same records counts nothing)


class Continuity(NamedTuple):
    """Register pairs one batch flagged (spark/register.py)."""

    breaks: int     # backwards or a step that is not the interval's value
    gaps: int       # intervals missing in between (not an error)


class StagingSummary(NamedTuple):
    rows: int
    oldest_received_ms: int | None


class Applied(NamedTuple):
    """What one batch's transaction did."""

    rows: int
    changes: list[MonthChange]
    quarantined: int
    alerts: int
    resolved: int
    oldest_received_ms: int | None
    duplicates: int = 0    # readings of an interval already stored (same value and register)

    @property
    def inserted(self) -> int:
        return sum(c.inserted for c in self.changes)


DeviceState = Literal["online", "offline"]
DEVICE_STATES: tuple[DeviceState, ...] = ("online", "offline")


class DeviceRecord(NamedTuple):
    """One parsed Kafka record of the devices topic (status or meta)."""

    device_id: str
    kind: Literal["status", "meta"]
    state: str | None           # a DeviceState when valid; anything a device sent otherwise
    firmware: str | None
    interval_s: int | None
    raw: str | None
    kafka_ts: datetime
    partition: int
    offset: int
    reason: str | None = None   # set when the contract refused the record (spark/transforms.py)


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    rows: int
    inserted: int
    quarantined: int
    alerts: int
    resolved: int
    seconds: float
    lag_s: float | None
    duplicates: int = 0    # measurement duplicates (another seq or life, same interval, value and register)

    def line(self) -> str:
        lag = f"{self.lag_s:.2f}s" if self.lag_s is not None else "-"
        replays = self.rows - self.inserted - self.quarantined - self.duplicates
        return (f"batch={self.batch_id} rows={self.rows} inserted={self.inserted} duplicates={self.duplicates} "
                f"replays={replays} quarantined={self.quarantined} alerts={self.alerts} "
                f"resolved={self.resolved} duration={self.seconds:.2f}s lag={lag}")


@dataclass(frozen=True)
class SinkOptions:
    """What the sink needs besides a connection."""

    timezone: str                  # the complex's: which local night a reading belongs to
    rules: Rules
    units: Mapping[str, str]       # meter → unit, stored with each alert
    devices_topic: str             # where device records came from (their quarantine source)
    projection: ProjectionOptions | None = None   # the month-end projection rule (None: off)


class PostgresSink:
    """Writes micro-batches. Each streaming query calls from its own thread, so each thread keeps its
    own connection (reopened after an error)."""

    def __init__(self, connect: Callable[[], psycopg.Connection], *, options: SinkOptions) -> None:
        self._connect = connect
        self.options = options
        self.tz = ZoneInfo(options.timezone)
        self._local = threading.local()
        self._all: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def connection(self) -> psycopg.Connection:
        conn: psycopg.Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    # ---------------------------------------------------------------------------- readings

    def write_readings(self, batch_id: int, rows: Sequence[Sequence[Any]]) -> BatchResult:
        """``rows`` in :class:`StagedReading` order, from the driver. All or nothing: one transaction;
        records the database refuses (poison) are found, quarantined with its reason, and the rest
        committed."""
        started = time.monotonic()
        staged = [StagedReading._make(r) for r in rows]
        conn = self.connection()

        def load(subset: Sequence[StagedReading]) -> None:
            with conn.cursor() as cur, cur.copy(f"COPY staging ({', '.join(_STAGING_NAMES)}) FROM STDIN") as cp:
                for row in subset:
                    cp.write_row(row)

        try:
            try:
                with conn.transaction():
                    applied = self._apply_readings(conn, lambda: load(staged))
            except psycopg.Error as exc:
                if not is_data_error(exc):
                    raise
                logger.warning("readings batch refused, isolating poison batch=%d reason=%s", batch_id,
                               rejection(exc))
                with conn.transaction():
                    bad = find_poison(staged, lambda subset: probe(
                        conn, lambda: self._apply_readings(conn, lambda: load(subset))))
                    staged = [r.quarantined(bad[i]) if i in bad else r for i, r in enumerate(staged)]
                    applied = self._apply_readings(conn, lambda: load(staged))
        except psycopg.Error:
            conn.close()  # a broken connection must not be reused by the next batch
            raise
        return self._result(batch_id, applied, started)

    def clear(self, key: BatchKey) -> int:
        """Delete what an interrupted earlier attempt of this batch left in ``reading_staging``."""
        conn = self.connection()
        try:
            with conn.transaction():
                deleted = conn.execute(_DELETE_STAGED, (key.stream_id, key.batch_id)).rowcount
        except psycopg.Error:
            conn.close()
            raise
        if deleted:
            logger.info("cleared leftovers of an earlier attempt batch=%d rows=%d", key.batch_id, deleted)
        return deleted

    def merge(self, key: BatchKey, *, staged: int) -> BatchResult | None:
        """Merge a batch the executors staged in ``reading_staging`` (``staged`` rows): one short
        transaction, which also deletes the batch's staged rows (so a replayed batch changes nothing).
        Records the database refuses are found by bisection over the staged rows, quarantined with its
        reason, and the rest committed.

        ``None`` (and nothing written) when fewer rows than ``staged`` are there: PostgreSQL lost them
        (a crash empties UNLOGGED tables), and the batch must be staged again."""
        started = time.monotonic()
        conn = self.connection()
        batch = (key.stream_id, key.batch_id)

        def load(subset: Sequence[tuple[int, int]] | None) -> None:
            if subset is None:
                conn.execute(_LOAD_STAGED, batch)
            else:
                conn.execute(_LOAD_STAGED_SUBSET, (*batch, [p for p, _ in subset], [o for _, o in subset]))

        def complete() -> bool:
            row = conn.execute(_COUNT_STAGED, batch).fetchone()
            found = int(row[0]) if row else 0
            if found != staged:
                logger.warning("staged rows missing batch=%d staged=%d found=%d", key.batch_id, staged, found)
            return found == staged

        try:
            try:
                with conn.transaction():
                    if not complete():
                        return None
                    applied = self._apply_readings(conn, lambda: load(None))
                    conn.execute(_DELETE_STAGED, batch)
            except psycopg.Error as exc:
                if not is_data_error(exc):
                    raise
                logger.warning("readings batch refused, isolating poison batch=%d reason=%s", key.batch_id,
                               rejection(exc))
                with conn.transaction():
                    if not complete():
                        return None
                    records = [(int(p), int(o)) for p, o in conn.execute(_STAGED_KEYS, batch).fetchall()]
                    bad = find_poison(records, lambda subset: probe(
                        conn, lambda: self._apply_readings(conn, lambda: load(subset))))
                    conn.execute(_MARK_REFUSED, ([records[i][0] for i in bad], [records[i][1] for i in bad],
                                                 list(bad.values()), *batch))
                    applied = self._apply_readings(conn, lambda: load(None))
                    conn.execute(_DELETE_STAGED, batch)
        except psycopg.Error:
            conn.close()
            raise
        return self._result(key.batch_id, applied, started)

    @staticmethod
    def _result(batch_id: int, applied: Applied, started: float) -> BatchResult:
        oldest = applied.oldest_received_ms
        lag = time.time() - oldest / 1000 if oldest is not None else None
        return BatchResult(batch_id, applied.rows, applied.inserted, applied.quarantined, applied.alerts,
                           applied.resolved, time.monotonic() - started, lag, applied.duplicates)

    def _apply_readings(self, conn: psycopg.Connection, load: Callable[[], None]) -> Applied:
        """The batch's effect, inside the caller's transaction: ``load`` fills the temp ``staging``."""
        conn.execute(_STAGING_DDL)
        load()
        with conn.cursor(row_factory=class_row(StagingSummary)) as cur:
            summary = cur.execute("SELECT count(*) AS rows, min(received_ms) AS oldest_received_ms "
                                  "FROM staging").fetchone()
        with conn.cursor(row_factory=class_row(Counts)) as cur:
            bad = cur.execute(_QUARANTINE).fetchone()
        conn.execute(_JUDGE)
        with conn.cursor(row_factory=class_row(Continuity)) as cur:
            continuity = cur.execute(_REGISTER).fetchone() or Continuity(0, 0)
        if continuity.breaks:
            logger.warning("register breaks flagged=%d gaps=%d (table register_breaks)", continuity.breaks,
                           continuity.gaps)
        with conn.cursor(row_factory=class_row(MonthChange)) as cur:
            changes = cur.execute(_APPLY).fetchall()
        with conn.cursor(row_factory=class_row(SetAside)) as cur:
            aside = cur.execute(_SET_ASIDE).fetchone()
        assert bad is not None and summary is not None and aside is not None
        reused = Counts(0, 0)
        if sum(c.inserted for c in changes) < summary.rows - bad.bad - aside.bad - aside.duplicates:
            # Some good reading was not new: a replay, or a reused seq. (When every one was inserted,
            # none can be: the check costs a lookup per reading, so it runs only then.)
            with conn.cursor(row_factory=class_row(Counts)) as cur:
                reused = cur.execute(_REUSED).fetchone() or reused
        alerts, resolved = self._evaluate_rules(conn, changes)
        return Applied(summary.rows, changes, bad.bad + aside.bad + reused.bad, alerts, resolved,
                       summary.oldest_received_ms, aside.duplicates)

    def _evaluate_rules(self, conn: psycopg.Connection, changes: list[MonthChange]) -> tuple[int, int]:
        cfg = self.options.rules
        usage = [rules.UsageChange(c.household_id, c.energy_type, c.month, c.before, c.after) for c in changes]
        alerts = rules.threshold_crossings(usage, cfg.thresholds)
        alerts += self._peer_alerts(conn, changes)
        night = self._night_flow(conn, changes)
        alerts += night.raise_alerts
        alerts += self._projection_alerts(conn, changes)
        raised = self._store_alerts(conn, alerts)
        resolved = self._resolve(conn, night.resolve_ids + self._alert_ids(conn, night.resolve_raised))
        return raised, resolved

    def _peer_alerts(self, conn: psycopg.Connection, changes: list[MonthChange]) -> list[rules.Alert]:
        rule = self.options.rules.peer
        min_covered = rule.min_days * 86400
        groups = {(c.building_id, c.energy_type, c.month) for c in changes if c.covered_s >= min_covered}
        if not groups:
            return []
        with conn.cursor(row_factory=class_row(PeerAmount)) as cur:
            rows = cur.execute(
                """SELECT h.building_id, et.key AS meter, u.usage_date AS month, u.household_id, u.amount
                   FROM energy_usage u JOIN households h ON h.id = u.household_id
                   JOIN energy_types et ON et.label_ko = u.energy_type
                   JOIN unnest(%s::int[], %s::text[], %s::date[]) AS g(building_id, meter, month)
                     ON g.building_id = h.building_id AND g.meter = et.key AND g.month = u.usage_date
                   WHERE u.covered_s >= %s""",
                ([g[0] for g in groups], [g[1] for g in groups], [g[2] for g in groups], min_covered)).fetchall()
        by_group: dict[tuple[int, str, date], dict[int, float]] = defaultdict(dict)
        for r in rows:
            by_group[(r.building_id, r.meter, r.month)][r.household_id] = float(r.amount)
        out: list[rules.Alert] = []
        for (_, meter, month), amounts in by_group.items():
            out += rules.peer_outliers(amounts, meter, month, rule)
        return out

    def _night_flow(self, conn: psycopg.Connection, changes: list[MonthChange]) -> rules.NightDecisions:
        rule = self.options.rules.night_flow
        meters = [m for m in rule.meters if m in {c.energy_type for c in changes}]
        none = rules.NightDecisions([], [], [])
        if not meters:
            return none
        # Nights touched by this batch's new readings (read back by ingestion time in this transaction).
        tz = self.options.timezone
        with conn.cursor(row_factory=class_row(TouchedNight)) as cur:
            touched = cur.execute(
                """SELECT DISTINCT household_id, meter, ((ts - interval '1 second') AT TIME ZONE %s)::date AS night
                   FROM meter_readings
                   WHERE ingested_at = now() AND meter = ANY(%s)
                     AND extract(hour FROM (ts - interval '1 second') AT TIME ZONE %s) >= %s
                     AND extract(hour FROM (ts - interval '1 second') AT TIME ZONE %s) < %s""",
                (tz, meters, tz, rule.night_start_hour, tz, rule.night_end_hour)).fetchall()
        if not touched:
            return none
        windows = {rules.NightKey(t.household_id, t.meter, t.night): rules.night_window(t.night, self.tz, rule)
                   for t in touched}
        keys = list(windows)
        with conn.cursor(row_factory=class_row(NightReading)) as cur:
            readings = cur.execute(
                """SELECT w.household_id, w.meter, w.night, r.ts, r.interval_s, r.value
                   FROM unnest(%s::int[], %s::text[], %s::date[], %s::timestamptz[], %s::timestamptz[])
                        AS w(household_id, meter, night, lo, hi)
                   JOIN meter_readings r ON r.household_id = w.household_id AND r.meter = w.meter
                        AND r.ts > w.lo AND r.ts <= w.hi""",
                ([k.household_id for k in keys], [k.meter for k in keys], [k.night for k in keys],
                 [windows[k][0] for k in keys], [windows[k][1] for k in keys])).fetchall()
        per_window: dict[rules.NightKey, list[rules.Interval]] = defaultdict(list)
        for r in readings:
            per_window[rules.NightKey(r.household_id, r.meter, r.night)].append(
                rules.Interval(r.ts, r.interval_s, r.value))
        with conn.cursor(row_factory=class_row(ActiveLeak)) as cur:
            active = cur.execute(
                """SELECT id, household_id, energy_type, period FROM alerts
                   WHERE rule = 'night_flow' AND state = 'active' AND household_id = ANY(%s)""",
                ([k.household_id for k in keys],)).fetchall()
        verdicts = {k: rules.judge_night(per_window.get(k, []), windows[k], rule.min_flow_per_hour.get(k.meter, 0))
                    for k in keys}
        open_leaks = {(a.household_id, a.energy_type): rules.OpenLeak(a.id, a.period) for a in active}
        return rules.night_flow_decisions(verdicts, open_leaks, rule)

    def _store_alerts(self, conn: psycopg.Connection, alerts: list[rules.Alert]) -> int:
        if not alerts:
            return 0
        units = self.options.units
        rows = conn.execute(
            """WITH a AS (
                   INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                       unit, detail)
                   SELECT * FROM unnest(%s::int[], %s::text[], %s::date[], %s::text[], %s::text[],
                                        %s::float8[], %s::float8[], %s::text[], %s::jsonb[])
                   ON CONFLICT (household_id, energy_type, period, rule) DO NOTHING
                   RETURNING id)
               INSERT INTO alert_notifications (alert_id, kind) SELECT id, 'raised' FROM a RETURNING alert_id""",
            ([a.household_id for a in alerts], [a.energy_type for a in alerts], [a.period for a in alerts],
             [a.rule for a in alerts], [a.severity for a in alerts], [a.observed for a in alerts],
             [a.reference for a in alerts], [units.get(a.energy_type, "") for a in alerts],
             [json.dumps(a.detail) for a in alerts])).fetchall()
        return len(rows)

    @staticmethod
    def _alert_ids(conn: psycopg.Connection, alerts: list[rules.Alert]) -> list[int]:
        if not alerts:
            return []
        rows = conn.execute(
            """SELECT a.id FROM alerts a
               JOIN unnest(%s::int[], %s::text[], %s::date[], %s::text[]) AS k(household_id, energy_type, period, rule)
                 USING (household_id, energy_type, period, rule)""",
            ([a.household_id for a in alerts], [a.energy_type for a in alerts], [a.period for a in alerts],
             [a.rule for a in alerts])).fetchall()
        return [int(r[0]) for r in rows]

    def _resolve(self, conn: psycopg.Connection, alert_ids: list[int]) -> int:
        if not alert_ids:
            return 0
        rows = conn.execute(
            """WITH r AS (UPDATE alerts SET state = 'resolved', resolved_at = now()
                          WHERE id = ANY(%s) AND state = 'active' RETURNING id)
               INSERT INTO alert_notifications (alert_id, kind) SELECT id, 'resolved' FROM r
               ON CONFLICT (alert_id, kind) DO NOTHING RETURNING alert_id""", (alert_ids,)).fetchall()
        return len(rows)

    # ----------------------------------------------------------------------------- devices

    def write_devices(self, batch_id: int, rows: Iterable[Sequence[Any]]) -> int:
        """Rows in :class:`DeviceRecord` order (``transforms.DEVICE_COLUMNS``). One transaction: records the
        contract refused (their ``reason`` is set) and records the database refuses are quarantined with
        their reasons, the rest committed."""
        parsed = [DeviceRecord._make(r) for r in rows]
        rejected = [(r, r.reason) for r in parsed if r.reason is not None]
        records = [r for r in parsed if r.reason is None]
        conn = self.connection()
        try:
            try:
                with conn.transaction():
                    return self._apply_devices(conn, records, rejected)
            except psycopg.Error as exc:
                if not is_data_error(exc):
                    raise
                logger.warning("devices batch refused, isolating poison batch=%d reason=%s", batch_id,
                               rejection(exc))
            with conn.transaction():
                bad = find_poison(records, lambda subset: probe(conn, lambda: self._apply_devices(conn, subset, [])))
                good = [r for i, r in enumerate(records) if i not in bad]
                return self._apply_devices(conn, good, rejected + [(records[i], reason) for i, reason in bad.items()])
        except psycopg.Error:
            conn.close()
            raise

    def _apply_devices(self, conn: psycopg.Connection, records: Sequence[DeviceRecord],
                       poisoned: list[tuple[DeviceRecord, str]]) -> int:
        latest: dict[str, dict[str, Any]] = {}
        bad = list(poisoned)
        for r in records:
            entry = latest.setdefault(r.device_id, {"device_id": r.device_id, "last_seen": r.kafka_ts})
            entry["last_seen"] = max(entry["last_seen"], r.kafka_ts)
            if r.kind == "status":
                if r.state not in DEVICE_STATES:
                    bad.append((r, f"status without a valid state: {str(r.state)[:20]!r}"))
                    continue
                entry["state"] = r.state
            else:
                entry.update(firmware=r.firmware, interval_s=r.interval_s, meta=r.raw)
        for e in latest.values():
            conn.execute(
                """INSERT INTO devices AS d (device_id, household_id, state, firmware, interval_s, meta, last_seen)
                   VALUES (%(device_id)s::text, (SELECT id FROM households WHERE device_id = %(device_id)s::text),
                           COALESCE(%(state)s::text, 'unknown'), %(firmware)s::text, %(interval_s)s::int,
                           %(meta)s::jsonb, %(last_seen)s::timestamptz)
                   ON CONFLICT (device_id) DO UPDATE SET
                       state = COALESCE(%(state)s::text, d.state),
                       firmware = COALESCE(EXCLUDED.firmware, d.firmware),
                       interval_s = COALESCE(EXCLUDED.interval_s, d.interval_s),
                       meta = COALESCE(EXCLUDED.meta, d.meta),
                       last_seen = GREATEST(d.last_seen, EXCLUDED.last_seen),
                       updated_at = now()""",
                {"state": None, "firmware": None, "interval_s": None, "meta": None, **e})
            if e.get("meta") is not None:
                conn.execute(_META_LIVES, {"device_id": e["device_id"], "meta": e["meta"]})
        for r, reason in bad:
            conn.execute(
                """INSERT INTO quarantine (source_topic, kafka_partition, kafka_offset, reason, device_id, raw_payload)
                   VALUES (%s, %s, %s, %s, left(%s, 64), %s)
                   ON CONFLICT DO NOTHING""",
                (self.options.devices_topic, r.partition, r.offset, reason, printable(r.device_id),
                 printable(r.raw)))
        return len(latest)

    # ---------------------------------------------------------------------------- projection

    def _projection_alerts(self, conn: psycopg.Connection, changes: list[MonthChange]) -> list[rules.Alert]:
        """Month-end projections of the household-months this batch changed. Event time, not the wall
        clock: how far the month has got is where its latest stored reading ends (the demo runs
        simulated months in minutes). Months already warned about are skipped before any work."""
        options = self.options.projection
        if options is None:
            return []
        meters = options.meters
        keys = [c for c in changes if c.energy_type in meters]
        if not keys:
            return []
        starts = [datetime(c.month.year, c.month.month, 1, tzinfo=self.tz) for c in keys]
        ends = [datetime(c.month.year + c.month.month // 12, c.month.month % 12 + 1, 1, tzinfo=self.tz) for c in keys]
        with conn.cursor(row_factory=class_row(ProjectionInput)) as cur:
            found = cur.execute(_PROJECTION_INPUTS, (
                [c.household_id for c in keys], [c.energy_type for c in keys], [c.month for c in keys],
                [c.after for c in keys], starts, ends, options.model)).fetchall()
        items = []
        for r in found:
            if r.latest is None:
                continue
            start = datetime(r.month.year, r.month.month, 1, tzinfo=self.tz)
            items.append(rules.MonthSoFar(r.household_id, r.energy_type, r.month, float(r.so_far),
                                          (r.latest - start).total_seconds() / 86400, r.forecast))
        return rules.projection_alerts(items, options)


# The retained meta's meters list may name each meter's life, serial and since (a replaced meter is a new
# life): the meter's history keeps them, whether its readings came first or not.
_META_LIVES = """
INSERT INTO meter_lives AS l (device_id, meter, life, serial, since)
SELECT %(device_id)s::text, m->>'meter', (m->>'life')::bigint, left(m->>'serial', 64), (m->>'since')::timestamptz
FROM jsonb_array_elements(CASE WHEN jsonb_typeof(%(meta)s::jsonb -> 'meters') = 'array'
                               THEN %(meta)s::jsonb -> 'meters' ELSE '[]'::jsonb END) AS m
WHERE jsonb_typeof(m -> 'life') = 'number' AND jsonb_typeof(m -> 'meter') = 'string'
ON CONFLICT (device_id, meter, life) DO UPDATE SET
    serial = COALESCE(EXCLUDED.serial, l.serial), since = COALESCE(EXCLUDED.since, l.since), updated_at = now()
"""


# The projection's inputs per changed household-month: the latest issued household forecast of the
# configured model for that month (no forecast: no row) and the end of the month's latest reading;
# months that already have a projection alert are left out (one per household-month).
_PROJECTION_INPUTS = """
SELECT k.household_id, k.meter AS energy_type, k.month, k.so_far, f.point AS forecast,
       (SELECT max(r.ts) FROM meter_readings r
        WHERE r.household_id = k.household_id AND r.meter = k.meter AND r.usage_month = k.month
          AND r.ts > k.lo AND r.ts <= k.hi) AS latest
FROM unnest(%s::int[], %s::text[], %s::date[], %s::numeric[], %s::timestamptz[], %s::timestamptz[])
     AS k(household_id, meter, month, so_far, lo, hi)
JOIN households h ON h.id = k.household_id
JOIN LATERAL (SELECT point FROM usage_forecasts f
              WHERE f.level = 'household' AND f.series_id = h.device_id AND f.energy_type = k.meter
                AND f.target_month = k.month AND f.model = %s
              ORDER BY f.issued_at DESC LIMIT 1) f ON true
WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.household_id = k.household_id AND a.energy_type = k.meter
                  AND a.period = k.month AND a.rule = 'projection')
"""


class ProjectionInput(NamedTuple):
    household_id: int
    energy_type: str
    month: date
    so_far: Decimal
    forecast: float
    latest: datetime | None


_STAGING_NAMES = [{"partition": "kafka_partition", "offset": "kafka_offset"}.get(c, c) for c in StagedReading._fields]
