"""Staging a micro-batch from the Spark executors, so the driver never touches a row.

Each partition of the batch COPYs its rows, already formatted as CSV lines by Spark (in the JVM), into
the UNLOGGED ``reading_staging`` table under the batch's key; the driver then merges the batch in one
short transaction (``sink.PostgresSink.merge``). A line PostgreSQL refuses even there (a NUL in a
string) is found by bisection and staged as a quarantine entry carrying the database's reason.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import psycopg
from apt_energy.spark.poison import find_poison, is_data_error, printable, probe

logger = logging.getLogger(__name__)

# reading_staging's columns in the order Spark writes them (see ``job.StreamJob``).
STAGED_COLUMNS = ("stream_id", "batch_id", "device_id", "meter", "life", "seq", "ts", "interval_s", "value",
                  "total", "unit", "usage_month", "topic", "kafka_partition", "kafka_offset", "reason", "raw",
                  "received_ms")

# Spark's to_csv options matching PostgreSQL's CSV COPY: NULL is an empty unquoted field, an empty
# string is "", quotes are doubled, and whitespace is kept.
CSV_OPTIONS = {"sep": ",", "quote": '"', "escape": '"', "nullValue": "", "emptyValue": '""',
               "ignoreLeadingWhiteSpace": "false", "ignoreTrailingWhiteSpace": "false"}

_COPY = f"COPY reading_staging ({', '.join(STAGED_COLUMNS)}) FROM STDIN (FORMAT csv)"


def stream_id(checkpoint: str) -> int:
    """A stable 64-bit id for a stream (its checkpoint location): a restarted job resumes the same
    stream and clears its own leftovers, and two jobs sharing a database never touch each other's."""
    return int.from_bytes(hashlib.blake2b(checkpoint.encode(), digest_size=8).digest(), "big", signed=True)


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
    """Picklable: Spark ships it to the executors and calls it with each partition's CSV lines
    (``rdd.mapPartitions``); it yields how many rows it staged, so the driver can tell a complete batch
    from one PostgreSQL lost."""

    conninfo: str = field(repr=False)   # holds the password
    retry: Retry = Retry()

    def __call__(self, rows: Iterable[Sequence[str]]) -> Iterator[int]:
        lines = [row[0] + "\n" for row in rows]
        if lines:
            self.stage(lines)
        yield len(lines)

    def stage(self, lines: Sequence[str]) -> int:
        """COPY ``lines`` in one transaction; returns how many were refused (and staged as quarantine
        entries instead). Transient errors are retried with backoff."""
        deadline = time.monotonic() + self.retry.give_up_after_s
        delay = self.retry.first_delay_s
        while True:
            conn = _connection(self.conninfo)
            try:
                return _stage(conn, lines)
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


def _copy(conn: psycopg.Connection, lines: Sequence[str]) -> None:
    with conn.cursor() as cur, cur.copy(_COPY) as cp:
        cp.write("".join(lines))


def _stage(conn: psycopg.Connection, lines: Sequence[str]) -> int:
    try:
        with conn.transaction():
            _copy(conn, lines)
        return 0
    except psycopg.Error as exc:
        if not is_data_error(exc):
            raise
    with conn.transaction():
        bad = find_poison(lines, lambda subset: probe(conn, lambda: _copy(conn, subset)))
        _copy(conn, [line for i, line in enumerate(lines) if i not in bad])
        for i, reason in bad.items():
            _stage_quarantined(conn, lines[i], reason)
    return len(bad)


def _stage_quarantined(conn: psycopg.Connection, line: str, reason: str) -> None:
    """The refused line as a quarantine entry only: its key, Kafka coordinates, device and payload
    (made storable) and a reason — the validation's if it had one, else the database's."""
    fields = dict(zip(STAGED_COLUMNS, next(csv.reader(io.StringIO(line))), strict=False))
    conn.execute(
        """INSERT INTO reading_staging (stream_id, batch_id, device_id, topic, kafka_partition, kafka_offset, reason,
                                        raw, received_ms)
           VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
        (int(fields["stream_id"]), int(fields["batch_id"]), printable(fields["device_id"]),
         printable(fields["topic"]), int(fields["kafka_partition"]), int(fields["kafka_offset"]),
         printable(fields["reason"]) or reason, printable(fields["raw"]),
         int(fields["received_ms"]) if fields.get("received_ms") else None))
