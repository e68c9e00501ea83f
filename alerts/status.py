"""What a running notifier is doing (``notifier_status``): its transport as configured in *its* process,
a heartbeat, and the problem it cannot get past with the fix in one line. The CLI, ``pipeline status`` and
the alerts dashboard read it; the CLI's own environment says nothing about a notifier elsewhere."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

logger = logging.getLogger(__name__)

__all__ = ["NotifierHealth", "describe", "forget", "record", "running"]

# A notifier that has not written for this long is taken as stopped (its poll is seconds).
STALE_S = 60.0


@dataclass(frozen=True)
class NotifierHealth:
    """One notifier's row of ``notifier_status``; ``age_s`` is seconds since its heartbeat."""

    owner: str
    transport: str
    destination: str
    started_at: datetime
    heartbeat_at: datetime
    in_doubt: int
    problem: str | None
    fix: str | None
    problem_since: datetime | None
    stopped_at: datetime | None
    age_s: float

    @property
    def alive(self) -> bool:
        return self.stopped_at is None and self.age_s <= STALE_S


def record(conn: psycopg.Connection, *, owner: str, transport: str, destination: str, in_doubt: int,
           problem: str | None, fix: str | None) -> None:
    """Upsert ``owner``'s row: heartbeat now; ``problem_since`` kept while the same problem lasts."""
    conn.execute(
        """INSERT INTO notifier_status (owner, transport, destination, in_doubt, problem, fix, problem_since)
           VALUES (%(owner)s, %(transport)s, %(destination)s, %(in_doubt)s, %(problem)s, %(fix)s,
                   CASE WHEN %(problem)s::text IS NULL THEN NULL ELSE now() END)
           ON CONFLICT (owner) DO UPDATE SET stopped_at = NULL, transport = EXCLUDED.transport,
               destination = EXCLUDED.destination,
               heartbeat_at = now(), in_doubt = EXCLUDED.in_doubt, problem = EXCLUDED.problem, fix = EXCLUDED.fix,
               problem_since = CASE WHEN EXCLUDED.problem IS NULL THEN NULL
                                    WHEN notifier_status.problem IS NOT DISTINCT FROM EXCLUDED.problem
                                    THEN notifier_status.problem_since ELSE now() END""",
        {"owner": owner, "transport": transport, "destination": destination, "in_doubt": in_doubt,
         "problem": problem, "fix": fix})


def forget(conn: psycopg.Connection, owner: str) -> None:
    """A notifier that stops cleanly says so (a crashed one's heartbeat just ages)."""
    conn.execute("UPDATE notifier_status SET stopped_at = now() WHERE owner = %s", (owner,))


def running(conn: psycopg.Connection) -> list[NotifierHealth]:
    """Notifiers running (not stopped, a heartbeat in the last :data:`STALE_S` seconds), newest first;
    with none, the last one seen (so the operator learns when it stopped)."""
    with conn.cursor(row_factory=class_row(NotifierHealth)) as cur:
        rows = cur.execute(
            """SELECT owner, transport, destination, started_at, heartbeat_at, in_doubt, problem, fix,
                      problem_since, stopped_at, extract(epoch FROM now() - heartbeat_at)::float8 AS age_s
               FROM notifier_status ORDER BY heartbeat_at DESC""").fetchall()
    live = [r for r in rows if r.alive]
    return live or rows[:1]


def describe(rows: list[NotifierHealth], *, would: str) -> list[str]:
    """Lines for the operator: where the running notifier delivers, and any problem with its fix."""
    if not rows:
        return [f"delivery: no notifier has run on this database yet (with this shell's settings it would "
                f"be: {would}); start one: apt-energy notifier (or apt-energy pipeline up)"]
    lines = []
    for r in rows:
        if not r.alive:
            lines.append(f"delivery: no notifier running (last seen {r.age_s:.0f}s ago, {r.transport}: "
                         f"{r.destination}); start one: apt-energy notifier (or apt-energy pipeline up)")
            continue
        lines.append(f"delivery: {r.destination} [notifier {r.owner}, {r.transport}, heartbeat {r.age_s:.0f}s ago]")
        if r.problem:
            since = f" since {r.problem_since:%Y-%m-%d %H:%M:%S %Z}" if r.problem_since else ""
            lines.append(f"  problem{since}: {r.problem} ({r.in_doubt} alert(s) in doubt)")
            lines.append(f"  fix: {r.fix}")
    return lines
