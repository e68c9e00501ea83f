"""A Slack stand-in per test, a fresh database, and helpers to queue alerts and run notifiers."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import pytest
from apt_energy.alerts import MessageStyle, Notifier, NotifierOptions, OutboxState, Transport
from apt_energy.config import Secret, Settings
from apt_energy.database import connect

from tests.slack_stub import SlackStub

# Fast enough for tests; the lease stays far above the transports' timeouts, as in production.
FAST = NotifierOptions(poll_s=0.2, recheck_s=0.3, lease_s=30, max_backoff_s=1.0)


@pytest.fixture
def settings(stack_settings: Settings, database_factory: Callable[[], Settings], slack: SlackStub) -> Settings:
    """A fresh database and a bot token pointed at the stand-in."""
    db = database_factory()
    secrets = dataclasses.replace(stack_settings.secrets, slack_bot_token=Secret("xoxb-test"),
                                  slack_webhook_url=Secret(""), slack_base_url=slack.base_url)
    return dataclasses.replace(stack_settings, postgres=db.postgres, secrets=secrets,
                               slack=dataclasses.replace(stack_settings.slack, poll_s=0.2))


def make_notifier(settings: Settings, transport: Transport, options: NotifierOptions = FAST,
                  owner: str | None = None) -> Notifier:
    return Notifier(functools.partial(connect, settings, autocommit=True), transport,
                    MessageStyle.from_settings(settings), options=options, owner=owner)




def insert_alerts(settings: Settings, n: int, *, state: OutboxState = OutboxState.PENDING,
                  lease_owner: str | None = None, lease_s: float | None = None) -> list[int]:
    """Queue ``n`` threshold alerts (one per household); optionally as rows another notifier holds."""
    with connect(settings) as conn:
        rows = conn.execute(
            """WITH a AS (INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                             unit)
                         SELECT id, 'electricity', '2024-08-01', 'threshold', 'warning', 512.5, 500, 'kWh'
                         FROM households ORDER BY id LIMIT %(n)s RETURNING id)
               INSERT INTO alert_notifications (alert_id, kind, state, lease_owner, lease_until, claimed_at)
               SELECT id, 'raised', %(state)s, %(owner)s::text, now() + make_interval(secs => %(lease_s)s),
                      CASE WHEN %(owner)s::text IS NULL THEN NULL ELSE now() END
               FROM a ORDER BY id RETURNING id""",
            {"n": n, "state": state, "owner": lease_owner, "lease_s": lease_s}).fetchall()
        conn.commit()
    return [int(r[0]) for r in rows]


def states(settings: Settings) -> list[str]:
    with connect(settings) as conn:
        return [str(r[0]) for r in conn.execute("SELECT state FROM alert_notifications ORDER BY id").fetchall()]


def all_in(settings: Settings, state: OutboxState) -> bool:
    found = states(settings)
    return bool(found) and all(s == state for s in found)
