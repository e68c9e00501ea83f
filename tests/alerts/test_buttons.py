"""Slack's buttons through a Socket Mode stand-in: the real slack_sdk client, the real database and
notifier. Each lifecycle step is one Slack post or one edit of the alert's message."""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from apt_energy.alerts import BotTransport
from apt_energy.alerts.buttons import ButtonListener, Origin
from apt_energy.config import Settings
from apt_energy.database import connect

from tests.alerts.conftest import FAST, insert_alerts, make_notifier
from tests.alerts.support import NotifierThread
from tests.mqtt_helpers import wait_for
from tests.slack_stub import SlackStub
from tests.socket_mode_stub import SocketModeStub

pytestmark = pytest.mark.integration

ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"


@pytest.fixture
def socket_mode(slack: SlackStub) -> Iterator[SocketModeStub]:
    stub = SocketModeStub()
    slack.socket_mode = stub
    yield stub
    stub.close()


@pytest.fixture
def buttons(settings: Settings, slack: SlackStub, socket_mode: SocketModeStub) -> Iterator[ButtonListener]:
    listener = ButtonListener(functools.partial(connect, settings, autocommit=True), app_token="xapp-test",
                              origin=Origin(socket_mode.app_id, socket_mode.team_id), operators={ALICE, BOB},
                              base_url=slack.base_url)
    listener.start()
    assert socket_mode.connected.wait(10)
    yield listener
    listener.stop()


@pytest.fixture
def notifier(settings: Settings, slack: SlackStub) -> Iterator[NotifierThread]:
    transport = BotTransport("xoxb-test", settings.slack.channel, base_url=slack.base_url, timeout_s=5)
    thread = NotifierThread(make_notifier(settings, transport, dataclasses.replace(FAST, min_post_interval_s=0.0)))
    yield thread
    thread.stop()
    assert thread.error is None


def events(settings: Settings) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute("SELECT kind, actor FROM alert_events ORDER BY id").fetchall()


def raised_and_posted(settings: Settings, slack: SlackStub) -> tuple[int, str]:
    [nid] = insert_alerts(settings, 1)
    wait_for(lambda: nid in slack.delivered_ids(), 30, "the alert's message")
    with connect(settings) as conn:
        row = conn.execute("SELECT alert_id FROM alert_notifications WHERE id = %s", (nid,)).fetchone()
    assert row is not None
    return int(row[0]), slack.messages[-1]["ts"]


def actions(blocks: list[dict[str, Any]]) -> list[str]:
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_an_alert_raised_reminded_escalated_acknowledged_by_button_and_resolved_is_one_post_or_edit_per_step(
        settings: Settings, slack: SlackStub, socket_mode: SocketModeStub, buttons: ButtonListener) -> None:
    transport = BotTransport("xoxb-test", settings.slack.channel, base_url=slack.base_url, timeout_s=5)
    escalating = dataclasses.replace(FAST, min_post_interval_s=0.0, escalate_after_s={"warning": 1.5})
    notifier = NotifierThread(make_notifier(settings, transport, escalating))
    try:
        alert_id, ts = raised_and_posted(settings, slack)
        assert actions(slack.messages[0]["blocks"]) == ["apt_energy_ack", "apt_energy_assign", "apt_energy_resolve"]
        wait_for(lambda: len(slack.posts()) == 3, 30, "a reminder, then the escalation")
        with connect(settings) as conn:
            assert conn.execute("SELECT severity, raised_severity, escalation FROM alerts").fetchone() == (
                "critical", "warning", 2)
        acked = socket_mode.press(user=ALICE, action_id="apt_energy_ack", alert_id=alert_id)
        wait_for(lambda: len(slack.updates) == 1, 30, "the message edited to acknowledged")
        resolved = socket_mode.press(user=BOB, action_id="apt_energy_resolve", alert_id=alert_id)
        wait_for(lambda: len(slack.updates) == 2, 30, "the message edited to resolved")
        wait_for(lambda: all(n == 0 for n in pending(settings)), 30, "outbox settled")
    finally:
        notifier.stop()
    assert notifier.error is None
    assert events(settings) == [("raised", None), ("reminded", None), ("escalated", None), ("acknowledged", ALICE),
                                ("resolved", BOB)]
    posts = slack.posts()
    assert len(posts) == 3 and "확인 요청" in posts[1]["text"] and "상향 조치" in posts[2]["text"]
    assert [u["ts"] for u in slack.updates] == [ts, ts]                 # the alert's own message, edited in place
    assert ALICE in str(slack.updates[0]["blocks"]) and actions(slack.updates[0]["blocks"])
    assert actions(slack.updates[1]["blocks"]) == [] and BOB in str(slack.updates[1]["blocks"])
    assert {acked, resolved} <= set(socket_mode.acks)
    assert buttons.stats.done == 2 and not buttons.stats.refused


def pending(settings: Settings) -> list[int]:
    with connect(settings) as conn:
        return [int(r[0]) for r in conn.execute(
            "SELECT count(*) FROM alert_notifications WHERE state IN ('pending', 'sending')").fetchall()]


def test_two_people_pressing_acknowledge_at_once_make_one_step_and_one_edit(
        settings: Settings, slack: SlackStub, socket_mode: SocketModeStub, buttons: ButtonListener,
        notifier: NotifierThread) -> None:
    alert_id, ts = raised_and_posted(settings, slack)
    both = [threading.Thread(target=socket_mode.press, kwargs={"user": u, "action_id": "apt_energy_ack",
                                                               "alert_id": alert_id}) for u in (ALICE, BOB)]
    for t in both:
        t.start()
    for t in both:
        t.join()
    wait_for(lambda: buttons.stats.done + buttons.stats.unchanged == 2, 30, "both presses handled")
    wait_for(lambda: len(slack.updates) == 1 and pending(settings) == [0], 30, "the edit")
    assert buttons.stats.done == 1 and buttons.stats.unchanged == 1
    assert [k for k, _ in events(settings)] == ["raised", "acknowledged"]
    assert slack.updates[0]["ts"] == ts and len(socket_mode.acks) == 2


def test_a_button_on_an_alert_the_rule_resolved_changes_nothing(
        settings: Settings, slack: SlackStub, socket_mode: SocketModeStub, buttons: ButtonListener,
        notifier: NotifierThread) -> None:
    alert_id, _ = raised_and_posted(settings, slack)
    with connect(settings) as conn:   # what the stream job's rule does
        conn.execute("UPDATE alerts SET state = 'resolved', resolved_at = now() WHERE id = %s", (alert_id,))
        conn.execute("INSERT INTO alert_notifications (alert_id, kind) VALUES (%s, 'resolved')", (alert_id,))
        conn.commit()
    wait_for(lambda: len(slack.posts()) == 2, 30, "the rule's resolution posted")
    envelope = socket_mode.press(user=ALICE, action_id="apt_energy_ack", alert_id=alert_id)
    wait_for(lambda: buttons.stats.unchanged == 1, 30, "the press handled")
    assert envelope in socket_mode.acks
    assert [k for k, _ in events(settings)] == ["raised", "resolved"] and slack.updates == []


def test_a_replayed_envelope_is_acknowledged_and_ignored(
        settings: Settings, slack: SlackStub, socket_mode: SocketModeStub, buttons: ButtonListener,
        notifier: NotifierThread) -> None:
    alert_id, _ = raised_and_posted(settings, slack)
    envelope = socket_mode.envelope(user=ALICE, action_id="apt_energy_assign", alert_id=alert_id)
    socket_mode.send(envelope)
    wait_for(lambda: buttons.stats.done == 1, 30, "the press")
    socket_mode.send(envelope)   # Slack resends an envelope it thinks was not acknowledged
    wait_for(lambda: buttons.stats.replayed == 1, 30, "the replay")
    wait_for(lambda: len(slack.updates) == 1 and pending(settings) == [0], 30, "one edit")
    assert socket_mode.acks.count(envelope["envelope_id"]) == 2
    assert [k for k, _ in events(settings)] == ["raised", "assigned"]


def test_forged_or_foreign_presses_are_refused(settings: Settings, slack: SlackStub, socket_mode: SocketModeStub,
                                               buttons: ButtonListener, notifier: NotifierThread) -> None:
    alert_id, _ = raised_and_posted(settings, slack)
    sent = [socket_mode.press(user=ALICE, action_id="apt_energy_resolve", alert_id=alert_id, app_id="A0FORGED"),
            socket_mode.press(user=ALICE, action_id="apt_energy_resolve", alert_id=alert_id, team_id="T0OTHER"),
            socket_mode.press(user=MALLORY, action_id="apt_energy_resolve", alert_id=alert_id),
            socket_mode.press(user=ALICE, action_id="apt_energy_resolve", alert_id=alert_id, kind="view_submission")]
    wait_for(lambda: len(buttons.stats.refused) == 4, 30, "four refusals")
    assert set(sent) <= set(socket_mode.acks)        # acknowledged all the same (else Slack resends them)
    assert [k for k, _ in events(settings)] == ["raised"] and slack.updates == []
    reasons = " | ".join(buttons.stats.refused)
    assert "another app" in reasons and "another workspace" in reasons and "not one of alerts.operators" in reasons
