"""The notifier cannot stall: a channel the bot cannot list, lost answers, a history it may not read, a
burst of hundreds of alerts — every alert still goes out once, and the operator is told what to fix."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from apt_energy.alerts import BotTransport, OutboxState
from apt_energy.alerts.status import describe, running
from apt_energy.config import Settings
from apt_energy.database import connect

from tests.alerts.conftest import all_in, insert_alerts, make_notifier, states
from tests.alerts.support import NotifierThread
from tests.mqtt_helpers import wait_for
from tests.slack_stub import Scripted, SlackStub

pytestmark = pytest.mark.integration


def bot(channel: str, slack: SlackStub) -> BotTransport:
    return BotTransport("xoxb-test", channel, base_url=slack.base_url, timeout_s=5)


def test_the_issue_run_a_channel_the_bot_cannot_list_and_two_500s_delivers_every_alert_once(
        settings: Settings, slack: SlackStub) -> None:
    # issue 24: APT_ENERGY_SLACK_CHANNEL=alerts, a private channel conversations.list does not show, and the
    # first two posts answered 500 — every alert stayed `sending` forever.
    slack.channels = [{"id": "C0OTHER", "name": "general"}]
    ids = insert_alerts(settings, 64)
    slack.script.extend([Scripted.accepted_then_500(), Scripted(500)])
    notifier = NotifierThread(make_notifier(settings, bot("alerts", slack)))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "every alert delivered")
    finally:
        notifier.stop()
    assert Counter(slack.delivered_ids()) == Counter(ids)   # once each: the in-doubt digest was found, not resent
    assert notifier.notifier.stats.reconciled == 64 and notifier.notifier.problem is None
    assert any("checking whether" in (p.get("text") or "") for p in slack.posts())   # the id, learnt


def test_an_unreadable_history_blocks_no_other_alert_and_tells_the_operator_the_fix(
        settings: Settings, slack: SlackStub) -> None:
    first = insert_alerts(settings, 1)
    slack.script.append(Scripted.accepted_then_500())
    slack.history_error = "missing_scope"    # the bot has chat:write but not channels:history
    notifier = NotifierThread(make_notifier(settings, bot(settings.slack.channel, slack)))
    try:
        wait_for(lambda: notifier.notifier.problem is not None, 30, "the history check failing")
        with connect(settings) as conn:     # a second alert, raised while the first is in doubt
            conn.execute("""INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed,
                                                reference, unit)
                            SELECT id, 'water', '2024-08-01', 'threshold', 'warning', 30, 25, 'm³'
                            FROM households ORDER BY id DESC LIMIT 1""")
            conn.execute("INSERT INTO alert_notifications (alert_id, kind) SELECT max(id), 'raised' FROM alerts")
            conn.commit()
        wait_for(lambda: sorted(states(settings)) == ["sending", "sent"], 30, "the second alert delivered")
        with connect(settings) as conn:
            wait_for(lambda: bool(running(conn)) and running(conn)[0].problem is not None, 30, "status row")
            lines = describe(running(conn), would="-")
    finally:
        notifier.stop()
    assert slack.delivered_ids().count(first[0]) == 1
    text = "\n".join(lines)
    assert "Slack channel #apt-energy-alerts by the bot" in text and "missing_scope" in text
    assert "fix: add the bot scopes channels:history and groups:history" in text and "1 alert(s) in doubt" in text


def test_a_burst_of_500_alerts_posts_as_digests_within_slacks_limits(settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 500)
    fast = make_notifier(settings, bot(settings.slack.channel, slack))
    fast = make_notifier(settings, bot(settings.slack.channel, slack),
                         dataclasses.replace(fast.options, batch=500, min_post_interval_s=0.0))
    notifier = NotifierThread(fast)
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "the burst delivered")
    finally:
        notifier.stop()
    assert Counter(slack.delivered_ids()) == Counter(ids)
    for post in slack.posts():
        assert len(post["blocks"]) <= 50
        assert all(len(b["text"]["text"]) <= 3000 for b in post["blocks"] if b["type"] == "section")
