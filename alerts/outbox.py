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

__all__ = ["EDIT_KINDS", "POST_KINDS", "InDoubt", "Kind", "Notice", "OutboxState",
           "claim", "give_back", "hold_in_doubt", "in_doubt", "mark_delivered",
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

Kind = Literal["raised", "acknowledged", "assigned", "reminded", "escalated", "resolved"]
# A new message in the channel (held in quiet hours) …
POST_KINDS: tuple[Kind, ...] = ("raised", "reminded", "escalated")
# … or, where the transport can, an edit of the alert's first message (a person's step is never held).
EDIT_KINDS: tuple[Kind, ...] = ("acknowledged", "assigned", "resolved")


@dataclass(frozen=True)
class Notice:
    """One claimed notification joined with its alert and household."""

    id: int
    kind: Kind
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
    # The alert's case as it stands now (an edit shows the current state, whichever step queued it).
    state: str = "active"
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    assignee: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    escalation: int = 0
    actor: str | None = None          # who took this step (NULL: the rule or the escalation clock)
    note: str | None = None           # their note
    # The alert's first message (its 'raised' row), which edits replace; shared: it was a digest.
    target_channel: str | None = None
    target_ts: str | None = None
    target_shared: bool = False

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
    WHERE id IN (SELECT n.id FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id
                 WHERE n.state = %(pending)s
                   -- quiet hours hold new messages of the severities asleep now, never a person's step
                   AND NOT (n.kind = ANY(%(post_kinds)s) AND a.severity = ANY(%(quiet)s))
                   -- a later step waits for the alert's first message (an edit needs it, and order matters)
                   AND (n.kind = 'raised' OR EXISTS (
                        SELECT 1 FROM alert_notifications r WHERE r.alert_id = n.alert_id AND r.kind = 'raised'
                          AND r.state IN ('sent', 'console', 'failed')))
                 ORDER BY n.id LIMIT %(limit)s FOR UPDATE OF n SKIP LOCKED)
    RETURNING id, kind, alert_id, event_id)
SELECT c.id, c.kind, a.id AS alert_id, a.rule, a.severity, a.energy_type, a.period, a.observed, a.reference,
       a.unit, b.building_number AS building, h.floor, h.unit AS unit_no, COALESCE(a.detail, '{}') AS detail,
       a.state, a.acknowledged_by, a.acknowledged_at, a.assignee, a.resolved_by, a.resolved_at,
       a.escalation,
       e.actor, e.note, r.channel AS target_channel, r.slack_ts AS target_ts,
       coalesce(r.slack_ts IS NOT NULL AND EXISTS (
           SELECT 1 FROM alert_notifications x WHERE x.channel = r.channel AND x.slack_ts = r.slack_ts
             AND x.alert_id <> r.alert_id), false) AS target_shared   -- a digest: never replaced by one alert
FROM c JOIN alerts a ON a.id = c.alert_id
JOIN households h ON h.id = a.household_id JOIN buildings b ON b.id = h.building_id
LEFT JOIN alert_events e ON e.id = c.event_id
LEFT JOIN alert_notifications r ON r.alert_id = c.alert_id AND r.kind = 'raised' AND r.state = 'sent'
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


def claim(conn: psycopg.Connection, *, owner: str, limit: int, lease_s: float,
          quiet: tuple[str, ...] = ()) -> list[Notice]:
    """Move up to ``limit`` pending rows to ``sending`` under ``owner``'s lease; return them, oldest first.
    New messages of the ``quiet`` severities wait (quiet hours); a later step waits for the first message."""
    with conn.transaction(), conn.cursor(row_factory=class_row(Notice)) as cur:
        return cur.execute(_CLAIM, {"sending": OutboxState.SENDING, "pending": OutboxState.PENDING,
                                    "owner": owner, "lease_s": lease_s, "limit": limit,
                                    "post_kinds": list(POST_KINDS), "quiet": list(quiet)}).fetchall()


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


def in_doubt(conn: psycopg.Connection) -> int:
    """How many rows are ``sending`` because their post is in doubt and the history has not settled it."""
    row = conn.execute("SELECT count(*) FROM alert_notifications WHERE state = %s AND last_error LIKE %s",
                       (OutboxState.SENDING, "history unavailable%")).fetchone()
    return int(row[0]) if row else 0


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
