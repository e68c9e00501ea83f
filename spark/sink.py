"""The exact PostgreSQL sink: one transaction per micro-batch, COPY (or the executors' staged rows) into
a temp table, set-based SQL (spark/merge_sql.py: the readings merge and the two identities of a reading;
spark/judge_sql.py: the verdicts), then the alert rules on the rows the batch changed
(spark/evaluation.py) in the same transaction, and the devices topic (spark/devices.py).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from apt_energy.rules import MonthChange, Rules
from apt_energy.rules import registry as rule_registry
from apt_energy.spark import devices
from apt_energy.spark.batch import Applied, BatchResult, Continuity, Counts, SetAside, StagedReading, StagingSummary
from apt_energy.spark.evaluation import evaluate_rules
from apt_energy.spark.judge_sql import JUDGE, REGISTER
from apt_energy.spark.merge_sql import (
    APPLY,
    COUNT_STAGED,
    DELETE_STAGED,
    LOAD_STAGED,
    LOAD_STAGED_SUBSET,
    MARK_REFUSED,
    QUARANTINE,
    REUSED,
    SET_ASIDE,
    STAGED_KEYS,
    STAGING_DDL,
)
from apt_energy.spark.poison import find_poison, is_data_error, probe, rejection
from apt_energy.spark.staging import BatchKey
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

__all__ = ["Applied", "BatchResult", "MonthChange", "PostgresSink", "SinkOptions", "StagedReading"]


@dataclass(frozen=True)
class SinkOptions:
    """What the sink needs besides a connection."""

    timezone: str                  # the complex's: which local night a reading belongs to
    rules: Rules                   # every registered rule's parameters (settings.rules)
    units: Mapping[str, str]       # meter → unit, stored with each alert
    devices_topic: str             # where device records came from (their quarantine source)
    # rule key → what the application composed for that rule besides its parameters (the projection
    # rule's tier bands and bill estimate: rules/projection.py ProjectionOptions); a rule without: none
    rule_options: Mapping[str, object] = field(default_factory=dict)


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
                deleted = conn.execute(DELETE_STAGED, (key.stream_id, key.batch_id)).rowcount
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
                conn.execute(LOAD_STAGED, batch)
            else:
                conn.execute(LOAD_STAGED_SUBSET, (*batch, [p for p, _ in subset], [o for _, o in subset]))

        def complete() -> bool:
            row = conn.execute(COUNT_STAGED, batch).fetchone()
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
                    conn.execute(DELETE_STAGED, batch)
            except psycopg.Error as exc:
                if not is_data_error(exc):
                    raise
                logger.warning("readings batch refused, isolating poison batch=%d reason=%s", key.batch_id,
                               rejection(exc))
                with conn.transaction():
                    if not complete():
                        return None
                    records = [(int(p), int(o)) for p, o in conn.execute(STAGED_KEYS, batch).fetchall()]
                    bad = find_poison(records, lambda subset: probe(
                        conn, lambda: self._apply_readings(conn, lambda: load(subset))))
                    conn.execute(MARK_REFUSED, ([records[i][0] for i in bad], [records[i][1] for i in bad],
                                                 list(bad.values()), *batch))
                    applied = self._apply_readings(conn, lambda: load(None))
                    conn.execute(DELETE_STAGED, batch)
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
        conn.execute(STAGING_DDL)
        load()
        with conn.cursor(row_factory=class_row(StagingSummary)) as cur:
            summary = cur.execute("SELECT count(*) AS rows, min(received_ms) AS oldest_received_ms "
                                  "FROM staging").fetchone()
        with conn.cursor(row_factory=class_row(Counts)) as cur:
            bad = cur.execute(QUARANTINE).fetchone()
        conn.execute(JUDGE)
        with conn.cursor(row_factory=class_row(Continuity)) as cur:
            continuity = cur.execute(REGISTER).fetchone() or Continuity(0, 0)
        if continuity.breaks:
            logger.warning("register breaks flagged=%d gaps=%d (table register_breaks)", continuity.breaks,
                           continuity.gaps)
        with conn.cursor(row_factory=class_row(MonthChange)) as cur:
            changes = cur.execute(APPLY).fetchall()
        with conn.cursor(row_factory=class_row(SetAside)) as cur:
            aside = cur.execute(SET_ASIDE).fetchone()
        assert bad is not None and summary is not None and aside is not None
        reused = Counts(0, 0)
        if sum(c.inserted for c in changes) < summary.rows - bad.bad - aside.bad - aside.duplicates:
            # Some good reading was not new: a replay, or a reused seq. (When every one was inserted,
            # none can be: the check costs a lookup per reading, so it runs only then.)
            with conn.cursor(row_factory=class_row(Counts)) as cur:
                reused = cur.execute(REUSED).fetchone() or reused
        alerts, resolved = self._evaluate_rules(conn, changes)
        return Applied(summary.rows, changes, bad.bad + aside.bad + reused.bad, alerts, resolved,
                       summary.oldest_received_ms, aside.duplicates)

    def _evaluate_rules(self, conn: psycopg.Connection, changes: list[MonthChange]) -> tuple[int, int]:
        """The registry's rules over the batch's changed months; returns (alerts raised, alerts resolved)."""
        o = self.options
        return evaluate_rules(conn, changes, registry=rule_registry.current(), params=o.rules, timezone=o.timezone,
                              units=o.units, options=o.rule_options)

    # ----------------------------------------------------------------------------- devices

    def write_devices(self, batch_id: int, rows: Iterable[Sequence[Any]]) -> int:
        """Rows in :class:`~apt_energy.spark.devices.DeviceRecord` order (``transforms.DEVICE_COLUMNS``):
        see :func:`apt_energy.spark.devices.write_devices`."""
        conn = self.connection()
        try:
            return devices.write_devices(conn, batch_id, rows, devices_topic=self.options.devices_topic)
        except psycopg.Error:
            conn.close()
            raise


_STAGING_NAMES = [{"partition": "kafka_partition", "offset": "kafka_offset"}.get(c, c) for c in StagedReading._fields]
