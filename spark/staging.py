"""Staging a micro-batch from the Spark executors, so the driver never touches a row.

Each partition of the batch reaches one Python worker as Arrow record batches of raw Kafka records
(``DataFrame.mapInArrow``); in that one pass the worker judges each record by the contract
(:func:`apt_energy.core.contract.validate_reading`, then the clock window) and COPYs the rows into the
UNLOGGED ``reading_staging`` table under the batch's key. The driver then merges the batch in one short
transaction (``sink.PostgresSink.merge``). A row PostgreSQL refuses even there (a NUL in a string) is
found by bisection and staged as a quarantine entry carrying the database's reason.

Most records are readings exactly as our own gateways encode them: those the worker recognises with
:class:`apt_energy.core.canonical.CanonicalReader` (no JSON parser) and writes as ready COPY lines made of the
payload's own bytes; every other record takes the contract's full validator and psycopg's row encoder.
py-spy put the validator at 60 % and the row encoder at 28 % of a staging worker before.

Why one Python pass: the previous path ran the validator as a row-at-a-time Python UDF (pickled rows,
``StructType.toInternal``: two thirds of that worker's time went to moving rows between the JVM and
Python, one third to the contract), formatted CSV in the JVM, and shipped the lines to a second Python
pass for the COPY. Here every record crosses into Python once, as Arrow columns, and never comes back.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from apt_energy.core.canonical import CanonicalReader, instant
from apt_energy.core.contract import MAX_PAYLOAD_BYTES, Rejection, usage_month, validate_reading, window_rejections
from apt_energy.spark.poison import find_poison, is_data_error, printable, probe

logger = logging.getLogger(__name__)

# reading_staging's columns, in the order of a staged row.
STAGED_COLUMNS = ("stream_id", "batch_id", "device_id", "meter", "life", "seq", "ts", "interval_s", "value",
                  "total", "unit", "usage_month", "topic", "kafka_partition", "kafka_offset", "reason", "raw",
                  "received_ms")

# What the executors read of each Kafka record (``job.StreamJob`` selects them), and what they return.
KAFKA_COLUMNS = ("value", "topic", "partition", "offset", "received_ms")
COUNT_SCHEMA = "staged long"

_COPY = f"COPY reading_staging ({', '.join(STAGED_COLUMNS)}) FROM STDIN"
_IDX_DEVICE, _IDX_REASON = STAGED_COLUMNS.index("device_id"), STAGED_COLUMNS.index("reason")
# Kafka topic names are [a-zA-Z0-9._-]; a line is only written for one that needs no COPY escaping.
_PLAIN_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")

# A staged row: the values of STAGED_COLUMNS, or the same as one line of COPY's text format (bytes).
StagedRow = tuple[Any, ...] | bytes


def stream_id(checkpoint: str) -> int:
    """A stable 64-bit id for a stream (its checkpoint location): a restarted job resumes the same
    stream and clears its own leftovers, and two jobs sharing a database never touch each other's."""
    return int.from_bytes(hashlib.blake2b(checkpoint.encode(), digest_size=8).digest(), "big", signed=True)


def raw_text(payload: bytes | None) -> str | None:
    """Bytes as text PostgreSQL stores: invalid UTF-8 replaced, NUL (which text refuses) replaced."""
    if payload is None:
        return None
    return payload.decode("utf-8", "replace").replace("\x00", "\ufffd")


@dataclass(frozen=True)
class RecordCheck:
    """How the executors judge a readings record: the contract (with the known meters' ``units``), then
    the clock window around the batch's ``now``. Picklable."""

    units: Mapping[str, str]
    timezone: str                   # the complex's: which local month a reading counts in
    max_future_s: int
    max_past_days: int
    max_bytes: int = MAX_PAYLOAD_BYTES

    def judge(self, now: datetime) -> RecordJudge:
        """This check for one batch: its clock window fixed at ``now``."""
        return RecordJudge(self, now)

    def row(self, stream: int, batch: int, payload: bytes | None, topic: str, partition: int, offset: int,
            received: int | None, *, now: datetime) -> tuple[Any, ...]:
        """One record as a staged row (see :meth:`RecordJudge.row`)."""
        return self.judge(now).row(stream, batch, payload, topic, partition, offset, received)


class RecordJudge:
    """A :class:`RecordCheck` bound to one batch's ``now``: the window's bounds and reason texts, the
    zone and a month cache are worked out once per partition, not per record (they were a quarter of
    the per-record time, measured with py-spy)."""

    def __init__(self, check: RecordCheck, now: datetime) -> None:
        future, old = window_rejections(max_future_s=check.max_future_s, max_past_days=check.max_past_days)
        # contract.check_window's comparisons, with its bounds computed once
        self._latest, self._future = now + timedelta(seconds=check.max_future_s), str(future)
        self._earliest, self._old = now - timedelta(days=check.max_past_days), str(old)
        self._check = check
        self._tz = ZoneInfo(check.timezone)
        self._months: dict[datetime, date] = {}   # readings of one interval share their ts
        self._canonical = CanonicalReader(check.units, max_bytes=check.max_bytes)
        self._future_b, self._old_b = self._future.encode(), self._old.encode()
        self._ts_cells: dict[bytes, tuple[datetime, bytes]] = {}
        self._topics: dict[str, bytes | None] = {}

    def row(self, stream: int, batch: int, payload: bytes | None, topic: str, partition: int, offset: int,
            received: int | None) -> tuple[Any, ...]:
        """One record as a staged row (:data:`STAGED_COLUMNS`): the reading and a NULL reason, or
        NULL fields and the contract's reason (a reading timed outside the window keeps its fields)."""
        raw = raw_text(payload)
        r = validate_reading(payload, units=self._check.units, max_bytes=self._check.max_bytes)
        if isinstance(r, Rejection):
            return (stream, batch, None, None, None, None, None, None, None, None, None, None, topic, partition,
                    offset, str(r), raw, received)
        ts = r.ts
        reason = self._future if ts > self._latest else self._old if ts < self._earliest else None
        # value and total go as their shortest repr, the decimal the JSON wrote (contract.exact).
        return (stream, batch, r.device_id, r.meter, r.life, r.seq, ts, r.interval_s, r.value, r.total, r.unit,
                self._month(ts), topic, partition, offset, reason, raw, received)

    def _month(self, ts: datetime) -> date:
        month = self._months.get(ts)
        if month is None:
            if len(self._months) > 10_000:
                self._months.clear()
            month = self._months[ts] = usage_month(ts, self._tz)
        return month

    def line(self, stream: int, batch: int, payload: bytes | None, topic: str, partition: int, offset: int,
             received: int | None) -> StagedRow:
        """The same as :meth:`row`, as a ready COPY line when the payload is a canonical reading (the hot
        path: the payload's own bytes are the line's cells), else as :meth:`row`'s tuple."""
        if payload is None:
            return self.row(stream, batch, payload, topic, partition, offset, received)
        r = self._canonical.read(payload)
        plain = self._plain_topic(topic)
        cells = None if r is None else self._ts_cells.get(r.ts) or self._ts_cell(r.ts)
        if r is None or plain is None or cells is None:
            return self.row(stream, batch, payload, topic, partition, offset, received)
        ts, month = cells
        reason = self._future_b if ts > self._latest else self._old_b if ts < self._earliest else b"\\N"
        return b"\t".join((b"%d\t%d" % (stream, batch), r.device_id, r.meter, r.life, r.seq, r.ts, r.interval_s,
                           r.value, r.total, r.unit, month, plain, b"%d" % partition, b"%d" % offset, reason,
                           payload, b"\\N" if received is None else b"%d" % received)) + b"\n"

    def _ts_cell(self, text: bytes) -> tuple[datetime, bytes] | None:
        ts = instant(text)
        if ts is None:
            return None
        if len(self._ts_cells) > 10_000:
            self._ts_cells.clear()
        cell = self._ts_cells[text] = (ts, self._month(ts).isoformat().encode())
        return cell

    def _plain_topic(self, topic: str) -> bytes | None:
        if topic not in self._topics:
            if len(self._topics) > 1_000:
                self._topics.clear()
            self._topics[topic] = topic.encode() if _PLAIN_TOPIC.fullmatch(topic) else None
        return self._topics[topic]


@dataclass(frozen=True)
class BatchKey:
    """Which rows of ``reading_staging`` belong to one micro-batch of one stream."""

    stream_id: int
    batch_id: int


@dataclass(frozen=True)
class Retry:
    """How long an executor keeps retrying a transient database error (the task would otherwise fail
    the query)."""

    give_up_after_s: float = 600.0
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0


@dataclass(frozen=True)
class PartitionStager:
    """Picklable: Spark ships it to the executors (``DataFrame.mapInArrow``) with each partition of
    one micro-batch (``key``) as Kafka records (:data:`KAFKA_COLUMNS`); it judges them (the clock
    window around ``now``), COPYs them and yields how many rows it staged (:data:`COUNT_SCHEMA`), so
    the driver can tell a complete batch from one PostgreSQL lost."""

    conninfo: str = field(repr=False)   # holds the password
    check: RecordCheck
    key: BatchKey
    now: datetime
    retry: Retry = Retry()

    def rows(self, batches: Iterable[Any]) -> list[StagedRow]:
        """Arrow record batches of Kafka records → staged rows (COPY lines on the hot path)."""
        stream, batch, line = self.key.stream_id, self.key.batch_id, self.check.judge(self.now).line
        out: list[StagedRow] = []
        for b in batches:
            cols = b.to_pydict()
            out += [line(stream, batch, v, t, p, o, r)
                    for v, t, p, o, r in zip(*(cols[c] for c in KAFKA_COLUMNS), strict=True)]
        return out

    def __call__(self, batches: Iterable[Any]) -> Iterator[Any]:
        import pyarrow as pa

        rows = self.rows(batches)
        if rows:
            self.stage(rows)
        yield pa.RecordBatch.from_pydict({"staged": [len(rows)]}, schema=pa.schema([("staged", pa.int64())]))

    def stage(self, rows: Sequence[StagedRow]) -> int:
        """COPY staged ``rows`` in one transaction; returns how many were refused (and staged as
        quarantine entries instead). Transient errors are retried with backoff."""
        deadline = time.monotonic() + self.retry.give_up_after_s
        delay = self.retry.first_delay_s
        while True:
            try:
                return _stage(_connection(self.conninfo), rows)
            except psycopg.OperationalError as exc:
                _drop(self.conninfo)
                if time.monotonic() + delay > deadline:
                    raise
                logger.warning("staging failed, retrying in=%.1fs error=%s", delay, str(exc).strip()[:120])
                time.sleep(delay)
                delay = min(delay * 2, self.retry.max_delay_s)
            except BaseException:
                _drop(self.conninfo)
                raise


# Spark reuses its Python workers across tasks: one connection per worker process, not per partition.
_CONNECTIONS: dict[str, psycopg.Connection] = {}


def _connection(conninfo: str) -> psycopg.Connection:
    conn = _CONNECTIONS.get(conninfo)
    if conn is None or conn.closed:
        conn = psycopg.connect(conninfo)
        _CONNECTIONS[conninfo] = conn
    return conn


def _drop(conninfo: str) -> None:
    conn = _CONNECTIONS.pop(conninfo, None)
    if conn is not None:
        conn.close()


def _copy(conn: psycopg.Connection, rows: Sequence[StagedRow]) -> None:
    with conn.cursor() as cur, cur.copy(_COPY) as cp:
        lines = b"".join(row for row in rows if type(row) is bytes)   # COPY's rows are unordered
        if lines:
            cp.write(lines)
        for row in rows:
            if type(row) is not bytes:
                cp.write_row(row)


def as_tuple(row: StagedRow) -> tuple[Any, ...]:
    """A staged row as the values of :data:`STAGED_COLUMNS` (a COPY line's cells as text, which
    PostgreSQL reads back as the same values)."""
    if type(row) is not bytes:
        return row   # type: ignore[return-value]
    return tuple(None if cell == "\\N" else cell for cell in row.rstrip(b"\n").decode().split("\t"))


def _stage(conn: psycopg.Connection, rows: Sequence[StagedRow]) -> int:
    try:
        with conn.transaction():
            _copy(conn, rows)
        return 0
    except psycopg.Error as exc:
        if not is_data_error(exc):
            raise
    with conn.transaction():
        bad = find_poison(rows, lambda subset: probe(conn, lambda: _copy(conn, subset)))
        _copy(conn, [quarantined(row, bad[i]) if i in bad else row for i, row in enumerate(rows)])
    return len(bad)


def quarantined(staged: StagedRow, reason: str) -> tuple[Any, ...]:
    """A refused staged row as a quarantine entry only: its key, Kafka coordinates, device and payload
    (made storable) and a reason — the validation's if it had one, else the database's."""
    row = as_tuple(staged)
    stream, batch, device = row[0], row[1], row[_IDX_DEVICE]
    topic, partition, offset, own_reason, raw, received = row[_IDX_REASON - 3:]
    return (stream, batch, printable(device), None, None, None, None, None, None, None, None, None,
            printable(topic), partition, offset, printable(own_reason) or reason, printable(raw), received)
