"""The alert outbox (``alert_notifications``): its states, typed rows, and the SQL that moves rows
between states under a claim lease.

A notifier *claims* pending rows (``pending → sending``) with ``FOR UPDATE SKIP LOCKED`` and stamps them
with its owner id and a lease; only the owner may mark them delivered or give them back. A ``sending``
row whose lease expired is *in doubt*: any notifier may take it over (:func:`take_expired`) to settle it
against the channel's history. Two notifiers therefore never hold the same row at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

__all__ = ["InDoubt", "Notice", "OutboxState", "claim", "give_back", "hold_in_doubt", "mark_delivered",
           "mark_failed", "renew", "take_expired"]


class OutboxState(StrEnum):
    """``alert_notifications.state``: pending → sending → sent | console | failed (sending → pending again
    when a post certainly did not happen)."""

    PENDING = "pending"    # queued by the stream job's sink, in the alert's own transaction
    SENDING = "sending"    # claimed under a lease; the post is in doubt until marked
    SENT = "sent"          # Slack accepted it (channel + ts recorded)
    CONSOLE = "console"    # printed: no Slack configured
    FAILED = "failed"      # given up on: in doubt with a transport that cannot check (webhook)


OPEN_STATES = (OutboxState.PENDING, OutboxState.SENDING)
DELIVERED_STATES = (OutboxState.SENT, OutboxState.CONSOLE)


@dataclass(frozen=True)
class Notice:
    """One claimed notification joined with its alert and household."""

    id: int
    kind: Literal["raised", "resolved"]
    alert_id: int
    rule: str
    severity: str
    energy_type: str
    period: date
    observed: float
    reference: float
    unit: str
    building: int
    floor: int
    unit_no: int
    detail: dict[str, Any] = field(default_factory=dict)   # the rule's context (e.g. a projection's tier)

    @property
    def door(self) -> str:
        return f"{self.floor}{self.unit_no:02d}"


@dataclass(frozen=True)
class InDoubt:
    """A ``sending`` row taken over after its lease expired; ``claimed_at`` bounds the history search."""

    id: int
    claimed_at: datetime


_CLAIM = """
WITH c AS (
    UPDATE alert_notifications SET state = %(sending)s, attempts = attempts + 1, lease_owner = %(owner)s,
           lease_until = now() + make_interval(secs => %(lease_s)s), claimed_at = now()
    WHERE id IN (SELECT id FROM alert_notifications WHERE state = %(pending)s ORDER BY id LIMIT %(limit)s
                 FOR UPDATE SKIP LOCKED)
    RETURNING id, kind, alert_id)
SELECT c.id, c.kind, a.id AS alert_id, a.rule, a.severity, a.energy_type, a.period, a.observed, a.reference,
       a.unit, b.building_number AS building, h.floor, h.unit AS unit_no, COALESCE(a.detail, '{}') AS detail
FROM c JOIN alerts a ON a.id = c.alert_id
JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
ORDER BY c.id
"""

# Only rows whose lease expired; SKIP LOCKED plus the re-checked WHERE under READ COMMITTED let exactly
# one notifier take each row over.
_TAKE_EXPIRED = """
UPDATE alert_notifications SET lease_owner = %(owner)s, lease_until = now() + make_interval(secs => %(lease_s)s)
WHERE id IN (SELECT id FROM alert_notifications
             WHERE state = %(sending)s AND (lease_until IS NULL OR lease_until < now())
             ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
  AND state = %(sending)s AND (lease_until IS NULL OR lease_until < now())
RETURNING id, coalesce(claimed_at, created_at) AS claimed_at
"""

_MINE = "id = ANY(%(ids)s) AND state = %(sending)s AND lease_owner = %(owner)s"


def claim(conn: psycopg.Connection, *, owner: str, limit: int, lease_s: float) -> list[Notice]:
    """Move up to ``limit`` pending rows to ``sending`` under ``owner``'s lease; return them, oldest first."""
    with conn.transaction(), conn.cursor(row_factory=class_row(Notice)) as cur:
        return cur.execute(_CLAIM, {"sending": OutboxState.SENDING, "pending": OutboxState.PENDING,
                                    "owner": owner, "lease_s": lease_s, "limit": limit}).fetchall()


def renew(conn: psycopg.Connection, ids: list[int], *, owner: str, lease_s: float) -> bool:
    """Extend ``owner``'s unexpired lease on all of ``ids``; False if any of them is no longer held (then
    nothing may be posted for them: another notifier may be settling them)."""
    cur = conn.execute(
        f"UPDATE alert_notifications SET lease_until = now() + make_interval(secs => %(lease_s)s) "
        f"WHERE {_MINE} AND lease_until >= now()",
        {"ids": ids, "sending": OutboxState.SENDING, "owner": owner, "lease_s": lease_s})
    return cur.rowcount == len(ids)


def mark_delivered(conn: psycopg.Connection, ids: list[int], *, owner: str, state: OutboxState, channel: str,
                   ts: str | None) -> int:
    """``sending → sent|console`` for the rows ``owner`` still holds; returns how many were marked."""
    cur = conn.execute(
        f"UPDATE alert_notifications SET state = %(state)s, channel = %(channel)s, slack_ts = %(ts)s, "
        f"sent_at = now(), last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE {_MINE}",
        {"ids": ids, "sending": OutboxState.SENDING, "owner": owner, "state": state, "channel": channel,
         "ts": ts})
    return cur.rowcount


def give_back(conn: psycopg.Connection, ids: list[int], *, owner: str, error: str | None) -> int:
    """``sending → pending``: the rows were certainly not posted (or history shows they were not)."""
    cur = conn.execute(
        f"UPDATE alert_notifications SET state = %(pending)s, last_error = coalesce(%(error)s, last_error), "
        f"lease_owner = NULL, lease_until = NULL WHERE {_MINE}",
        {"ids": ids, "sending": OutboxState.SENDING, "pending": OutboxState.PENDING, "owner": owner,
         "error": error})
    return cur.rowcount


def hold_in_doubt(conn: psycopg.Connection, ids: list[int], *, owner: str, recheck_s: float, error: str) -> int:
    """Keep the rows ``sending`` but let their lease run out after ``recheck_s``: Slack may have accepted
    the post, so the rows are settled against history (by any notifier) rather than posted again."""
    cur = conn.execute(
        f"UPDATE alert_notifications SET last_error = %(error)s, "
        f"lease_until = now() + make_interval(secs => %(recheck_s)s) WHERE {_MINE}",
        {"ids": ids, "sending": OutboxState.SENDING, "owner": owner, "error": error, "recheck_s": recheck_s})
    return cur.rowcount


def mark_failed(conn: psycopg.Connection, ids: list[int], *, owner: str, error: str) -> int:
    """``sending → failed``: in doubt and impossible to check, so not posted again (at most once)."""
    cur = conn.execute(
        f"UPDATE alert_notifications SET state = %(failed)s, last_error = %(error)s, lease_owner = NULL, "
        f"lease_until = NULL WHERE {_MINE}",
        {"ids": ids, "sending": OutboxState.SENDING, "failed": OutboxState.FAILED, "owner": owner,
         "error": error})
    return cur.rowcount


def take_expired(conn: psycopg.Connection, *, owner: str, lease_s: float, limit: int = 1000) -> list[InDoubt]:
    """Take over ``sending`` rows whose lease expired (or that predate leases), under ``owner``'s lease."""
    with conn.transaction(), conn.cursor(row_factory=class_row(InDoubt)) as cur:
        return cur.execute(_TAKE_EXPIRED, {"sending": OutboxState.SENDING, "owner": owner, "lease_s": lease_s,
                                           "limit": limit}).fetchall()


def state_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows per state, every state present (0 when none), plus ``in_doubt``: ``sending`` rows whose post may
    or may not have reached Slack (an error recorded, or the lease ran out) — the metrics read this."""
    counts = {s.value: 0 for s in OutboxState}
    for state, n in conn.execute("SELECT state, count(*) FROM alert_notifications GROUP BY state").fetchall():
        counts[str(state)] = int(n)
    row = conn.execute("SELECT count(*) FROM alert_notifications WHERE state = %s AND "
                       "(last_error IS NOT NULL OR lease_until IS NULL OR lease_until < now())",
                       (OutboxState.SENDING.value,)).fetchone()
    counts["in_doubt"] = int(row[0]) if row else 0
    return counts
