"""An alert's case: raised → acknowledged (by whom, when, note) → resolved (by the rule or by a person with
a note); an assignee; escalation steps for an alert nobody acknowledged (1: a reminder, 2: escalated —
a warning becomes critical).

Every step is one audit row (``alert_events``) and one outbox row (``alert_notifications``) written in
one transaction under the alert's row lock, so a step happens exactly once however many people press the
button at the same moment, and the notifier delivers it exactly once (an edit of the alert's message, or
a new post). The decision itself (:func:`refusal`) is a pure function."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

import psycopg
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

__all__ = ["Case", "Outcome", "Step", "apply", "escalate_due", "refusal"]

Step = Literal["acknowledged", "assigned", "resolved"]
STEPS: tuple[Step, ...] = ("acknowledged", "assigned", "resolved")


@dataclass(frozen=True)
class Case:
    """The lifecycle columns of one alert."""

    id: int
    state: str                       # active | resolved
    severity: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    assignee: str | None
    resolved_by: str | None
    escalation: int


class Outcome(NamedTuple):
    """What a step did: ``done`` (a new audit row and outbox row) or why not."""

    done: bool
    reason: str
    event_id: int | None = None


def refusal(case: Case | None, step: Step, actor: str) -> str | None:
    """Why ``actor`` may not take ``step`` on ``case`` now, or None. Repeating a step that already
    happened is refused, so a replayed or double press changes nothing."""
    if case is None:
        return "no such alert"
    if case.state == "resolved":
        who = f"by {case.resolved_by}" if case.resolved_by else "by the rule"
        return f"alert {case.id} is already resolved ({who})"
    if step == "acknowledged" and case.acknowledged_by:
        return f"alert {case.id} is already acknowledged by {case.acknowledged_by}"
    if step == "assigned" and case.assignee == actor:
        return f"alert {case.id} is already assigned to {actor}"
    return None


_UPDATE = {
    "acknowledged": "acknowledged_by = %(actor)s, acknowledged_at = now()",
    "assigned": "assignee = %(actor)s",
    "resolved": "state = 'resolved', resolved_at = now(), resolved_by = %(actor)s",
}

# One outbox row per (alert, kind): a re-assignment queues the 'assigned' row again for its newest event.
_QUEUE = """
INSERT INTO alert_notifications (alert_id, kind, event_id) VALUES (%(alert)s, %(kind)s, %(event)s)
ON CONFLICT (alert_id, kind) DO UPDATE SET event_id = EXCLUDED.event_id, state = 'pending', attempts = 0,
    last_error = NULL, lease_owner = NULL, lease_until = NULL, claimed_at = NULL
"""


def apply(conn: psycopg.Connection, alert_id: int, step: Step, *, actor: str, note: str | None = None,
          assignee: str | None = None) -> Outcome:
    """Take ``step`` on the alert as ``actor`` (for ``assigned``: give it to ``assignee``, default the
    actor), with an audit row and an outbox row, or say why not. One transaction."""
    who = assignee or actor if step == "assigned" else actor
    with conn.transaction(), conn.cursor(row_factory=class_row(Case)) as cur:
        case = cur.execute(
            """SELECT id, state, severity, acknowledged_by, acknowledged_at, assignee, resolved_by, escalation
               FROM alerts WHERE id = %s FOR UPDATE""", (alert_id,)).fetchone()
        why = refusal(case, step, who)
        if why:
            return Outcome(False, why)
        conn.execute(f"UPDATE alerts SET {_UPDATE[step]} WHERE id = %(alert)s", {"alert": alert_id, "actor": who})
        if step == "assigned" and who != actor:   # the audit row names who acted; the note, to whom
            note = f"to {who}" + (f": {note}" if note else "")
        row = conn.execute("INSERT INTO alert_events (alert_id, kind, actor, note) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (alert_id, step, actor, note)).fetchone()
        assert row is not None
        conn.execute(_QUEUE, {"alert": alert_id, "kind": step, "event": row[0]})
    logger.info("alert step alert=%d step=%s actor=%s", alert_id, step, actor)
    return Outcome(True, f"alert {alert_id} {step} by {who}", int(row[0]))


# Alerts nobody acknowledged for escalate_after since their last message reached the channel: the next
# step. SKIP LOCKED and the re-checked escalation level make each step happen once among many notifiers.
_DUE = """
SELECT a.id, a.escalation FROM alerts a
JOIN alert_notifications n ON n.alert_id = a.id
     AND n.kind = CASE a.escalation WHEN 0 THEN 'raised' ELSE 'reminded' END
     AND n.state IN ('sent', 'console', 'failed')
WHERE a.state = 'active' AND a.acknowledged_by IS NULL AND a.escalation < 2
  AND a.severity = %(severity)s AND coalesce(n.sent_at, n.claimed_at) < now() - make_interval(secs => %(after_s)s)
ORDER BY a.id LIMIT %(limit)s FOR UPDATE OF a SKIP LOCKED
"""


def escalate_due(conn: psycopg.Connection, after_s: Mapping[str, float], *, limit: int = 100) -> int:
    """Take the next escalation step for every alert that waited ``after_s[severity]`` unacknowledged:
    a reminder first, then escalation (a warning is raised to critical). Returns how many steps."""
    steps = 0
    for severity, wait in sorted(after_s.items()):
        with conn.transaction():
            due = conn.execute(_DUE, {"severity": severity, "after_s": wait, "limit": limit}).fetchall()
            for alert_id, level in due:
                kind = "reminded" if level == 0 else "escalated"
                conn.execute(
                    """UPDATE alerts SET escalation = escalation + 1,
                              raised_severity = CASE WHEN %(kind)s = 'escalated' THEN severity ELSE raised_severity END,
                              severity = CASE WHEN %(kind)s = 'escalated' THEN 'critical' ELSE severity END
                       WHERE id = %(alert)s""", {"alert": alert_id, "kind": kind})
                row = conn.execute("INSERT INTO alert_events (alert_id, kind, note) VALUES (%s, %s, %s) RETURNING id",
                                   (alert_id, kind, f"not acknowledged in {wait / 60:g} min")).fetchone()
                assert row is not None
                conn.execute(_QUEUE, {"alert": alert_id, "kind": kind, "event": row[0]})
                logger.info("alert escalation alert=%d step=%s severity=%s", alert_id, kind, severity)
                steps += 1
    return steps
