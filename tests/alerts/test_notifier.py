"""The notifier posts each alert once, whatever Slack answers: lost answers, crashes, rival notifiers."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from apt_energy.alerts import BotTransport, Message, OutboxState, Posted, WebhookTransport
from apt_energy.alerts.cli import build_notifier
from apt_energy.config import Secret, Settings
from apt_energy.core.errors import ConfigError

from tests.alerts.conftest import FAST, all_in, insert_alerts, make_notifier, states
from tests.alerts.support import NotifierThread
from tests.mqtt_helpers import wait_for
from tests.slack_stub import Scripted, SlackStub

pytestmark = pytest.mark.integration


def bot(settings: Settings, slack: SlackStub, *, timeout_s: float = 10) -> BotTransport:
    return BotTransport("xoxb-test", settings.slack.channel, base_url=slack.base_url, timeout_s=timeout_s)


def once_each(slack: SlackStub, ids: list[int]) -> bool:
    return Counter(slack.delivered_ids()) == Counter(ids)


def test_a_slack_outage_delays_but_loses_and_duplicates_nothing(settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 3)
    slack.script.extend([Scripted(500)] * 3 + [Scripted.rate_limited(1)] * 2)
    notifier = NotifierThread(make_notifier(settings, bot(settings, slack)))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "delivery after the outage")
    finally:
        notifier.stop()
    assert notifier.notifier.stats.failures >= 1
    assert once_each(slack, ids)
    assert len(slack.posts()) == 3 + 3 + 2           # 3 accepted + 3 × 500 + 2 × 429, no client-side retries


def test_a_post_slack_accepted_but_answered_500_is_not_posted_again(settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 3)
    slack.script.extend([Scripted.accepted_then_500(), Scripted.accepted_then_500()])
    notifier = NotifierThread(make_notifier(settings, bot(settings, slack)))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "delivery")
    finally:
        notifier.stop()
    assert once_each(slack, ids)
    assert len(slack.posts()) == 3
    assert notifier.notifier.stats.reconciled == 2   # both found in the channel's history


def test_a_post_whose_answer_times_out_after_acceptance_is_delivered_once(settings: Settings,
                                                                          slack: SlackStub) -> None:
    ids = insert_alerts(settings, 2)
    slack.script.append(Scripted.accepted_then_silent(delay_s=4))
    notifier = NotifierThread(make_notifier(settings, bot(settings, slack, timeout_s=1)))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "delivery")
    finally:
        notifier.stop()
    assert once_each(slack, ids)
    assert len(slack.posts()) == 2


def test_an_in_doubt_post_waits_for_the_history_to_be_readable_and_is_not_posted_again(
        settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 2)
    slack.script.append(Scripted.accepted_then_500())
    slack.history_outage = 6   # more than the reading client's own retries, twice
    notifier = NotifierThread(make_notifier(settings, bot(settings, slack)))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 90, "delivery once history is back")
    finally:
        notifier.stop()
    assert slack.history_outage <= 0 and notifier.notifier.stats.failures >= 2
    assert once_each(slack, ids) and len(slack.posts()) == 2


def test_two_notifiers_on_one_outbox_post_each_alert_once(settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 8)
    slack.script.extend([Scripted.accepted_then_500(), Scripted(500), Scripted.accepted_then_500(),
                         Scripted.rate_limited(1)])
    one_at_a_time = dataclasses.replace(FAST, batch=1)    # so the two interleave row by row
    first = NotifierThread(make_notifier(settings, bot(settings, slack), one_at_a_time, owner="first"))
    second = NotifierThread(make_notifier(settings, bot(settings, slack), one_at_a_time, owner="second"))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 90, "delivery by two notifiers")
    finally:
        first.stop()
        second.stop()
    assert first.error is None and second.error is None
    assert once_each(slack, ids)
    settled = sum(n.notifier.stats.sent + n.notifier.stats.reconciled for n in (first, second))
    assert settled == len(ids)


def test_a_row_stuck_in_sending_is_reconciled_while_the_notifier_runs(settings: Settings, slack: SlackStub) -> None:
    notifier = NotifierThread(make_notifier(settings, bot(settings, slack)))
    try:
        wait_for(lambda: notifier.notifier.stats.passes >= 1, 30, "a first pass over the empty outbox")
        # Another notifier claimed two rows, posted the first, and died before marking either.
        posted, unposted = insert_alerts(settings, 2, state=OutboxState.SENDING, lease_owner="dead", lease_s=1)
        bot(settings, slack).post(Message("posted by the dead notifier", []), [posted])
        wait_for(lambda: all_in(settings, OutboxState.SENT), 60, "stuck rows settled")
    finally:
        notifier.stop()
    assert once_each(slack, [posted, unposted])
    assert notifier.notifier.stats.reconciled == 1 and notifier.notifier.stats.sent == 1


class CrashAfterPost(BotTransport):
    def post(self, message: Message, ids: list[int]) -> Posted:
        super().post(message, ids)
        raise SystemExit("simulated crash between send and mark")


class CrashBeforePost(BotTransport):
    def post(self, message: Message, ids: list[int]) -> Posted:
        raise SystemExit("simulated crash after the claim")


@pytest.mark.parametrize("crash", [CrashAfterPost, CrashBeforePost])
def test_a_notifier_crash_mid_delivery_still_posts_exactly_once(settings: Settings, slack: SlackStub,
                                                               crash: type[BotTransport]) -> None:
    ids = insert_alerts(settings, 2)
    short_lease = dataclasses.replace(FAST, lease_s=3)   # the restarted notifier waits this long for the dead one
    first = NotifierThread(make_notifier(settings, crash("xoxb-test", settings.slack.channel,
                                                         base_url=slack.base_url, timeout_s=1), short_lease))
    first.thread.join(30)
    assert isinstance(first.error, SystemExit)
    assert states(settings) == ["sending", "sending"]  # both claimed, both in doubt
    second = NotifierThread(build_notifier(settings, options=FAST))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 30, "delivery after restart")
    finally:
        second.stop()
    assert once_each(slack, ids)


def test_in_doubt_webhook_deliveries_are_not_resent(settings: Settings, slack: SlackStub) -> None:
    insert_alerts(settings, 1)

    class Crash(WebhookTransport):
        def post(self, message: Message, ids: list[int]) -> Posted:
            super().post(message, ids)
            raise SystemExit("crash")

    first = NotifierThread(make_notifier(settings, Crash(slack.webhook_url, timeout_s=1),
                                         dataclasses.replace(FAST, lease_s=3)))
    first.thread.join(30)
    second = NotifierThread(make_notifier(settings, WebhookTransport(slack.webhook_url)))
    try:
        wait_for(lambda: states(settings) == ["failed"], 30, "in-doubt row settled")
    finally:
        second.stop()
    assert len(slack.webhook_posts) == 1


def test_a_webhook_post_answered_500_after_acceptance_is_failed_not_resent(settings: Settings,
                                                                         slack: SlackStub) -> None:
    insert_alerts(settings, 2)
    slack.script.append(Scripted.accepted_then_500())
    notifier = NotifierThread(make_notifier(settings, WebhookTransport(slack.webhook_url)))
    try:
        wait_for(lambda: sorted(states(settings)) == ["failed", "sent"], 30, "both settled")
    finally:
        notifier.stop()
    assert len(slack.webhook_posts) == 2   # the accepted one once, the other once
    assert states(settings) == ["failed", "sent"]


def test_many_pending_alerts_go_out_as_one_digest(settings: Settings, slack: SlackStub) -> None:
    ids = insert_alerts(settings, 12)
    notifier = NotifierThread(build_notifier(settings, options=FAST))
    try:
        wait_for(lambda: all_in(settings, OutboxState.SENT), 30, "digest")
    finally:
        notifier.stop()
    [post] = slack.posts()
    assert "12건" in post["text"] and once_each(slack, ids)


def test_a_lease_shorter_than_a_post_can_take_is_refused(settings: Settings, slack: SlackStub) -> None:
    with pytest.raises(ConfigError, match="lease_s"):
        make_notifier(settings, bot(settings, slack, timeout_s=10), dataclasses.replace(FAST, lease_s=5))


def test_without_slack_alerts_are_printed_and_kept(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = dataclasses.replace(settings, secrets=dataclasses.replace(settings.secrets, slack_bot_token=Secret("")))
    insert_alerts(quiet, 1)
    notifier = NotifierThread(build_notifier(quiet, options=FAST))
    try:
        wait_for(lambda: states(quiet) == ["console"], 30, "console delivery")
    finally:
        notifier.stop()
    assert "기준치를 초과했습니다" in capsys.readouterr().out
