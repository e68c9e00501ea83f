"""The registry's rules, run inside a readings batch's transaction: each rule reads what it needs (its own
SQL, in its module under rules/), the alerts are stored with their Slack delivery queued in the outbox, and
the alerts a rule is done with are resolved. Same transaction as the usage: a replayed batch cannot raise an
alert twice."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TypeVar

import psycopg
from apt_energy.rules import Alert, Batch, MonthChange, Outcome, Registry, Rules
from psycopg.rows import class_row

__all__ = ["ConnectionQuery", "decide", "evaluate_rules"]

R = TypeVar("R")


class ConnectionQuery:
    """:class:`apt_energy.rules.Query` over the batch's connection: rows as the rule's NamedTuple."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def rows(self, sql: str, args: Sequence[object], row: type[R]) -> list[R]:
        with self._conn.cursor(row_factory=class_row(row)) as cur:
            return cur.execute(sql, args).fetchall()  # type: ignore[arg-type]


def decide(batch: Batch, registry: Registry, params: Rules) -> Outcome:
    """Every rule over the batch, in the registry's order, as one outcome (pure but for the rules' reads
    through ``batch.db``)."""
    raised: list[Alert] = []
    resolve_ids: list[int] = []
    resolve_raised: list[Alert] = []
    for rule in registry:
        outcome = rule.evaluate(batch, registry.params(params, rule.key))
        raised += outcome.raise_alerts
        resolve_ids += outcome.resolve_ids
        resolve_raised += outcome.resolve_raised
    return Outcome(raised, resolve_ids, resolve_raised)


def evaluate_rules(conn: psycopg.Connection, changes: Sequence[MonthChange], *, registry: Registry, params: Rules,
                   timezone: str, units: Mapping[str, str], options: Mapping[str, object]) -> tuple[int, int]:
    """:func:`decide` inside the batch's transaction, then store and resolve; returns (raised, resolved)."""
    outcome = decide(Batch(changes, timezone, ConnectionQuery(conn), options), registry, params)
    stored = _store(conn, outcome.raise_alerts, units)
    resolved = _resolve(conn, outcome.resolve_ids + _ids(conn, outcome.resolve_raised))
    return stored, resolved


def _store(conn: psycopg.Connection, alerts: list[Alert], units: Mapping[str, str]) -> int:
    if not alerts:
        return 0
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


def _ids(conn: psycopg.Connection, alerts: list[Alert]) -> list[int]:
    """The stored ids of alerts this batch raised (to resolve those already over)."""
    if not alerts:
        return []
    rows = conn.execute(
        """SELECT a.id FROM alerts a
           JOIN unnest(%s::int[], %s::text[], %s::date[], %s::text[]) AS k(household_id, energy_type, period, rule)
             USING (household_id, energy_type, period, rule)""",
        ([a.household_id for a in alerts], [a.energy_type for a in alerts], [a.period for a in alerts],
         [a.rule for a in alerts])).fetchall()
    return [int(r[0]) for r in rows]


def _resolve(conn: psycopg.Connection, alert_ids: list[int]) -> int:
    if not alert_ids:
        return 0
    rows = conn.execute(
        """WITH r AS (UPDATE alerts SET state = 'resolved', resolved_at = now()
                      WHERE id = ANY(%s) AND state = 'active' RETURNING id)
           INSERT INTO alert_notifications (alert_id, kind) SELECT id, 'resolved' FROM r
           ON CONFLICT (alert_id, kind) DO NOTHING RETURNING alert_id""", (alert_ids,)).fetchall()
    return len(rows)
