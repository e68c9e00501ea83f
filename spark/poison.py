"""Poison records: rows that passed validation but that the database refuses inside a batch.

A NUL in a string, a number too large for its column, JSON PostgreSQL cannot store, an id longer than
its VARCHAR: one such row fails the whole micro-batch, and the same batch fails again on every restart.
:func:`find_poison` finds them by bisection with a caller-supplied ``probe`` (try a subset, roll it
back, report the database's reason), so the sink can quarantine exactly those and commit the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import psycopg

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLSTATE classes of errors caused by the data itself: 22 data exception, 23 integrity violation.
DATA_ERROR_CLASSES = ("22", "23")

_REASON_LIMIT = 300


def is_data_error(exc: BaseException) -> bool:
    """True when ``exc`` is the database refusing the data (retrying the same rows cannot help)."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True
    state = getattr(exc, "sqlstate", None)
    return isinstance(state, str) and state[:2] in DATA_ERROR_CLASSES


def rejection(exc: BaseException) -> str:
    """The database's reason for refusing a row, as a quarantine reason: ``database: <message>``.

    psycopg refuses some values itself before they reach the server (a NUL in a text field); those
    carry no server diagnostics, so the exception's own first line is the reason."""
    diag = getattr(exc, "diag", None)
    primary = str(diag.message_primary or "") if diag is not None else ""
    if not primary:
        lines = str(exc).strip().splitlines()
        primary = lines[0] if lines else type(exc).__name__
    return f"database: {primary}"[:_REASON_LIMIT]


def printable(text: str | None) -> str | None:
    """``text`` as PostgreSQL can store it: NUL (which no text column accepts) becomes U+FFFD."""
    return None if text is None else text.replace("\x00", "\ufffd")


def find_poison(items: Sequence[T], probe: Callable[[Sequence[T]], str | None]) -> dict[int, str]:
    """Positions in ``items`` of the records the database refuses, with its reason for each.

    ``probe(subset)`` writes ``subset`` and rolls it back, returning the rejection reason or ``None``;
    other errors (a lost connection) propagate. A failing chunk is halved until single records remain;
    a chunk that fails although both halves pass (records that conflict only together) is walked one
    record at a time, keeping the earliest records. ``O(k log n)`` probes for ``k`` poison records.
    """
    bad: dict[int, str] = {}
    positions = list(range(len(items)))

    def run(chunk: list[int]) -> str | None:
        return probe([items[i] for i in chunk])

    def split(chunk: list[int], reason: str) -> None:
        if len(chunk) == 1:
            bad[chunk[0]] = reason
            return
        mid = len(chunk) // 2
        failed = False
        for half in (chunk[:mid], chunk[mid:]):
            half_reason = run(half)
            if half_reason is not None:
                failed = True
                split(half, half_reason)
        if not failed:
            walk(chunk)

    def walk(chunk: list[int]) -> None:
        accepted: list[int] = []
        for i in chunk:
            reason = run([*accepted, i])
            if reason is None:
                accepted.append(i)
            else:
                bad[i] = reason

    remaining = positions
    while remaining:
        reason = run(remaining)
        if reason is None:
            break
        found = len(bad)
        split(remaining, reason)
        if len(bad) == found:   # the probe is not deterministic: leave the verdict to the real write
            break
        # Halves that pass alone may still fail together: check what is left as a whole again.
        remaining = [i for i in remaining if i not in bad]
    if bad:
        logger.warning("isolated poison records=%d of=%d", len(bad), len(items))
    return bad


def probe(conn: psycopg.Connection, action: Callable[[], object]) -> str | None:
    """Run ``action`` in a savepoint and roll it back: the database's reason if it refused the data."""
    try:
        with conn.transaction():
            action()
            raise psycopg.Rollback()
    except psycopg.Error as exc:
        if is_data_error(exc):
            reason: str = rejection(exc)
            return reason
        raise
    return None
