"""Alerts end to end: rules in the real stream job, the outbox, and Slack delivery exactly once."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apt_energy.config import Secret, Settings
from apt_energy.database import connect
from apt_energy.spark.job import StreamJob
from apt_energy.spark.notifier import BotTransport, Notifier, WebhookTransport
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from apt_energy.contract import Reading
from apt_energy.kafka import kafka_client
from tests.mqtt_helpers import wait_for
from tests.slack_stub import Scripted, SlackStub

pytestmark = pytest.mark.integration


@pytest.fixture
def slack() -> Iterator[SlackStub]:
    stub = SlackStub()
    yield stub
    stub.close()


@pytest.fixture
def settings(pipeline_settings: Settings, database_factory: Callable[[], Settings], slack: SlackStub) -> Settings:
    db = database_factory()
    secrets = dataclasses.replace(pipeline_settings.secrets, slack_bot_token=Secret("xoxb-test"),
                                  slack_base_url=slack.base_url)
    return dataclasses.replace(pipeline_settings, postgres=db.postgres, secrets=secrets,
                               slack=dataclasses.replace(pipeline_settings.slack, poll_s=0.2))


@pytest.fixture
def job(settings: Settings, spark: SparkSession, tmp_path: Path) -> Iterator[StreamJob]:
    j = StreamJob(settings, spark, checkpoint_dir=tmp_path / "ckpt")
    j.start()
    yield j
    j.stop()


class NotifierThread:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.notifier.run()
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self.notifier.stop_event.set()
        self.thread.join(30)


def produce(settings: Settings, readings: list[Reading]) -> None:
    p = Producer(kafka_client(settings, "admin").config())
    for r in readings:
        p.produce(settings.kafka.readings_topic, key=r.device_id.encode(), value=r.to_json())
    assert p.flush(30) == 0


def notifications(settings: Settings) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(
            """SELECT a.rule, a.state, n.kind, n.state, n.slack_ts FROM alert_notifications n
               JOIN alerts a ON a.id = n.alert_id ORDER BY n.id""").fetchall()


def hourly(device: str, meter: str, start: datetime, values: list[float], seq0: int = 0) -> list[Reading]:
    unit = {"electricity": "kWh", "water": "m³", "heating": "Mcal"}[meter]
    return [Reading(device, meter, seq0 + i, start + timedelta(hours=i + 1), 3600, v, v, unit)
            for i, v in enumerate(values)]


def test_crossing_a_threshold_alerts_once_with_one_slack_message(settings: Settings, job: StreamJob,
                                                                  slack: SlackStub) -> None:
    h = settings.complex.households()[5]   # building 1, floor 2, unit 2 → 202호
    aug = datetime(2024, 8, 2, tzinfo=UTC)
    notifier = NotifierThread(Notifier.from_settings(settings))
    try:
        produce(settings, hourly(h.device_id, "electricity", aug, [120.0] * 4))               # 480: below
        wait_for(lambda: job.stats.inserted >= 4, 90, "first readings")
        produce(settings, hourly(h.device_id, "electricity", aug + timedelta(hours=4), [30.0], seq0=4))   # 510
        wait_for(lambda: job.stats.inserted >= 5, 60, "crossing reading")
        produce(settings, hourly(h.device_id, "electricity", aug + timedelta(hours=5), [20.0], seq0=5))   # 530
        wait_for(lambda: job.stats.inserted >= 6, 60, "reading above the threshold")
        wait_for(lambda: len(slack.posts()) >= 1 and all(n[3] == "sent" for n in notifications(settings)), 30,
                 "delivery")
    finally:
        notifier.stop()
    assert [n[:4] for n in notifications(settings)] == [("threshold", "active", "raised", "sent")]
    [post] = slack.posts()
    text = post["text"]
    assert "1동" in text and "202호" in text and "510.0 kWh" in text and "500.0 kWh" in text and "2024-08" in text
    assert post["metadata"]["event_type"] == "apt_energy_alert"
    fields = json.dumps(post["blocks"], ensure_ascii=False)
    assert "1 / 202" in fields and "전력 (kWh)" in fields


def test_a_leak_alerts_then_resolves_and_both_are_posted(settings: Settings, job: StreamJob,
                                                         slack: SlackStub) -> None:
    h = settings.complex.households()[0]
    tz = settings.complex.tz
    start = datetime(2024, 5, 10, tzinfo=tz).astimezone(UTC)   # local midnight
    leak_day = [0.02] * 24
    normal_day = [0.001] * 6 + [0.05] * 18                     # dry nights, normal days
    values = leak_day + leak_day + normal_day
    notifier = NotifierThread(Notifier.from_settings(settings))
    try:
        produce(settings, hourly(h.device_id, "water", start, values[:48]))
        wait_for(lambda: job.stats.inserted >= 48, 90, "two leaking days")
        produce(settings, hourly(h.device_id, "water", start + timedelta(hours=48), values[48:], seq0=48))
        wait_for(lambda: job.stats.inserted >= 72, 60, "a dry night")
        wait_for(lambda: len(notifications(settings)) == 2 and all(n[3] == "sent" for n in notifications(settings)),
                 30, "both notifications delivered")
    finally:
        notifier.stop()
    assert [n[:4] for n in notifications(settings)] == [("night_flow", "resolved", "raised", "sent"),
                                                        ("night_flow", "resolved", "resolved", "sent")]
    texts = [p["text"] for p in slack.posts()]
    assert "누수 의심" in texts[0] and "2024-05-10" in texts[0] and texts[1].startswith("해제")


def insert_alerts(settings: Settings, n: int) -> None:
    with connect(settings) as conn:
        conn.execute(
            """WITH a AS (INSERT INTO alerts (household_id, energy_type, period, rule, severity, observed, reference,
                                             unit)
                         SELECT id, 'electricity', '2024-08-01', 'threshold', 'warning', 512.5, 500, 'kWh'
                         FROM households ORDER BY id LIMIT %s RETURNING id)
               INSERT INTO alert_notifications (alert_id, kind) SELECT id, 'raised' FROM a""", (n,))
        conn.commit()


def posted_ids(slack: SlackStub) -> list[int]:
    return [i for p in slack.posts() if p.get("metadata") for i in p["metadata"]["event_payload"]["notification_ids"]]


def test_a_slack_outage_delays_but_loses_and_duplicates_nothing(settings: Settings, slack: SlackStub) -> None:
    insert_alerts(settings, 3)
    slack.script.extend([Scripted(500)] * 3 + [Scripted(429, {"Retry-After": "1"},
                                                         {"ok": False, "error": "ratelimited"})] * 2)
    notifier = NotifierThread(Notifier.from_settings(settings))
    try:
        wait_for(lambda: all(n[3] == "sent" for n in notifications(settings)), 60, "delivery after the outage")
    finally:
        notifier.stop()
    assert notifier.notifier.failures >= 1          # the 500s exhausted the client's retries once
    accepted = [m for m in slack.messages]
    ids = [i for m in accepted for i in m["metadata"]["event_payload"]["notification_ids"]]
    assert sorted(ids) == [1, 2, 3]                  # each exactly once
    assert len(slack.posts()) == 3 + 3 + 2           # 3 accepted + 3 × 500 + 2 × 429


class CrashAfterPost(BotTransport):
    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        super().post(text, blocks, ids)
        raise SystemExit("simulated crash between send and mark")


class CrashBeforePost(BotTransport):
    def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
        raise SystemExit("simulated crash after the claim")


@pytest.mark.parametrize("crash", [CrashAfterPost, CrashBeforePost])
def test_a_notifier_crash_mid_delivery_still_posts_exactly_once(settings: Settings, slack: SlackStub,
                                                               crash: type[BotTransport]) -> None:
    insert_alerts(settings, 2)
    first = NotifierThread(Notifier(settings, crash("xoxb-test", settings.slack.channel, slack.base_url)))
    first.thread.join(30)
    assert isinstance(first.error, SystemExit)
    assert [n[3] for n in notifications(settings)] == ["sending", "sending"]  # both claimed, both in doubt
    second = NotifierThread(Notifier.from_settings(settings))
    try:
        wait_for(lambda: all(n[3] == "sent" for n in notifications(settings)), 30, "delivery after restart")
    finally:
        second.stop()
    assert sorted(posted_ids(slack)) == [1, 2]


def test_in_doubt_webhook_deliveries_are_not_resent(settings: Settings, slack: SlackStub) -> None:
    insert_alerts(settings, 1)

    class Crash(WebhookTransport):
        def post(self, text: str, blocks: list[dict[str, Any]], ids: list[int]) -> tuple[str, str]:
            super().post(text, blocks, ids)
            raise SystemExit("crash")

    first = NotifierThread(Notifier(settings, Crash(slack.webhook_url)))
    first.thread.join(30)
    second = NotifierThread(Notifier(settings, WebhookTransport(slack.webhook_url)))
    try:
        wait_for(lambda: notifications(settings)[0][3] == "failed", 30, "in-doubt row settled")
    finally:
        second.stop()
    assert len(slack.webhook_posts) == 1


def test_many_pending_alerts_go_out_as_one_digest(settings: Settings, slack: SlackStub) -> None:
    insert_alerts(settings, 12)
    notifier = NotifierThread(Notifier.from_settings(settings))
    try:
        wait_for(lambda: all(n[3] == "sent" for n in notifications(settings)), 30, "digest")
    finally:
        notifier.stop()
    [post] = slack.posts()
    assert "12건" in post["text"] and sorted(posted_ids(slack)) == list(range(1, 13))


def test_without_slack_alerts_are_printed_and_kept(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    quiet = dataclasses.replace(settings, secrets=dataclasses.replace(settings.secrets, slack_bot_token=Secret("")))
    insert_alerts(quiet, 1)
    notifier = NotifierThread(Notifier.from_settings(quiet))
    try:
        wait_for(lambda: notifications(quiet)[0][3] == "console", 30, "console delivery")
    finally:
        notifier.stop()
    assert "기준치를 초과했습니다" in capsys.readouterr().out
