"""An alert's case in the database: quiet hours hold a warning's message (never a critical one), and the
CLI acknowledges, assigns and resolves with an audit row each."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import datetime, timedelta

import pytest
from apt_energy.alerts import BotTransport, OutboxState, QuietHours
from apt_energy.alerts.lifecycle import apply
from apt_energy.config import Settings
from apt_energy.database import connect

from tests.alerts.conftest import FAST, all_in, insert_alerts, make_notifier
from tests.alerts.support import NotifierThread
from tests.conftest import env_for
from tests.mqtt_helpers import wait_for
from tests.slack_stub import SlackStub

pytestmark = pytest.mark.integration


def insert_critical(settings: Settings) -> int:
    with connect(settings) as conn:
        row = conn.execute(
            """WITH a AS (INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                             unit)
                         SELECT id, 'water', '2024-08-02', 'night_flow', 'critical', 6, 4, 'm³'
                         FROM households ORDER BY id DESC LIMIT 1 RETURNING id)
               INSERT INTO alert_notifications (alert_id, kind) SELECT id, 'raised' FROM a RETURNING id""").fetchone()
        conn.commit()
    assert row is not None
    return int(row[0])


def by_kind(settings: Settings) -> dict[tuple[int, str], str]:
    with connect(settings) as conn:
        return {(int(a), str(k)): str(s) for a, k, s in conn.execute(
            "SELECT alert_id, kind, state FROM alert_notifications").fetchall()}


def test_quiet_hours_hold_a_warning_until_they_end_and_never_a_critical_alert(settings: Settings,
                                                                             slack: SlackStub) -> None:
    tz = settings.complex.tz
    now = datetime.now(tz)
    window = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=1):%H:%M}"   # it is quiet now
    quiet = dataclasses.replace(FAST, quiet=QuietHours.parse(settings.complex.timezone, {"warning": window}))
    [warning] = insert_alerts(settings, 1)
    critical = insert_critical(settings)
    transport = BotTransport("xoxb-test", settings.slack.channel, base_url=slack.base_url, timeout_s=5)
    night = NotifierThread(make_notifier(settings, transport, quiet))
    try:
        wait_for(lambda: critical in slack.delivered_ids(), 30, "the critical alert at once")
        with connect(settings) as conn:   # someone acknowledges the warning from the CLI meanwhile
            alert_id = int(conn.execute("SELECT alert_id FROM alert_notifications WHERE id = %s",
                                        (warning,)).fetchone()[0])  # type: ignore[index]
            assert apply(conn, alert_id, "acknowledged", actor="alice", note="seen on the dashboard").done
        passes = night.notifier.stats.passes
        wait_for(lambda: night.notifier.stats.passes >= passes + 5, 30, "a few more passes")
    finally:
        night.stop()
    assert warning not in slack.delivered_ids() and slack.updates == []
    assert by_kind(settings)[(alert_id, "raised")] == "pending"
    morning = NotifierThread(make_notifier(settings, transport, FAST))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 30, "the warning in the morning, then its edit")
    finally:
        morning.stop()
    assert slack.delivered_ids().count(warning) == 1 and len(slack.updates) == 1
    assert "alice" in str(slack.updates[0]["blocks"])


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apt_energy", "alerts", *args], env=env_for(settings),
                          capture_output=True, text=True, timeout=60)


def test_the_cli_acknowledges_assigns_and_resolves_with_an_audit_row_each(settings: Settings) -> None:
    insert_alerts(settings, 2)
    with connect(settings) as conn:
        first, second = (int(r[0]) for r in conn.execute("SELECT id FROM alerts ORDER BY id").fetchall())
    assert cli(settings, "ack", str(first), "--as", "alice", "--note", "on it").returncode == 0
    again = cli(settings, "ack", str(first), "--as", "bob")
    assert again.returncode == 1 and "already acknowledged by alice" in again.stdout
    assert cli(settings, "assign", str(first), "--as", "alice", "--to", "bob").returncode == 0
    assert cli(settings, "resolve", str(second), "--as", "carol", "--note", "meter misread").returncode == 0
    listing = cli(settings, "--open")
    assert listing.returncode == 0, listing.stderr
    rows = [ln for ln in listing.stdout.splitlines() if ln.split()[:1] in ([str(first)], [str(second)])]
    assert len(rows) == 1 and "alice +" in rows[0] and "bob" in rows[0]
    assert "cases: raised 2, acknowledged 1, escalated 0, resolved 1, open 1" in listing.stdout
    assert "delivery: no notifier has run on this database yet" in listing.stdout
    with connect(settings) as conn:
        trail = conn.execute("SELECT alert_id, kind, actor, note FROM alert_events ORDER BY id").fetchall()
        queued = conn.execute("SELECT alert_id, kind FROM alert_notifications WHERE kind <> 'raised' "
                              "ORDER BY id").fetchall()
    assert trail == [(first, "raised", None, None), (second, "raised", None, None),
                     (first, "acknowledged", "alice", "on it"), (first, "assigned", "alice", "to bob"),
                     (second, "resolved", "carol", "meter misread")]
    assert queued == [(first, "acknowledged"), (first, "assigned"), (second, "resolved")]
