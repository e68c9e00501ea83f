"""Alerts end to end: rules in the real stream job raise them into the outbox, the notifier posts them.

The notifier's own guarantees (once, whatever Slack answers) are tested in tests/alerts/."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apt_energy.alerts.cli import build_notifier
from apt_energy.config import Secret, Settings
from apt_energy.core.contract import Reading
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect
from apt_energy.spark.job import StreamJob
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from tests.alerts.support import NotifierThread
from tests.mqtt_helpers import wait_for
from tests.slack_stub import SlackStub

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(pipeline_settings: Settings, database_factory: Callable[[], Settings], slack: SlackStub) -> Settings:
    db = database_factory()
    secrets = dataclasses.replace(pipeline_settings.secrets, slack_bot_token=Secret("xoxb-test"),
                                  slack_base_url=slack.base_url)
    return dataclasses.replace(pipeline_settings, postgres=db.postgres, secrets=secrets,
                               slack=dataclasses.replace(pipeline_settings.slack, poll_s=0.2))


@pytest.fixture
def job(settings: Settings, spark: SparkSession, tmp_path: Path) -> Iterator[StreamJob]:
    j = StreamJob.from_settings(settings, spark, checkpoint_dir=tmp_path / "ckpt")
    j.start()
    yield j
    j.stop()




def produce(settings: Settings, readings: list[Reading]) -> None:
    p = Producer(KafkaClient.from_settings(settings, "admin").config())
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
    notifier = NotifierThread(build_notifier(settings))
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
    notifier = NotifierThread(build_notifier(settings))
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


def test_a_projected_tier_3_month_alerts_once_per_household_month(settings: Settings, spark: SparkSession,
                                                                  tmp_path: Path, slack: SlackStub) -> None:
    from apt_energy.spark.cli import projection_options
    from apt_energy.spark.job import sink_options

    h = settings.complex.households()[5]   # 1동 202호
    tz = settings.complex.tz
    start = datetime(2024, 3, 1, tzinfo=tz).astimezone(UTC)   # local month start
    with connect(settings) as conn:
        # an older issue (low) and the latest (400 kWh): the latest issue of the configured model wins
        for issued, point in ((datetime(2023, 12, 1, tzinfo=UTC), 100.0), (datetime(2024, 1, 1, tzinfo=UTC), 400.0)):
            conn.execute(
                """INSERT INTO usage_forecasts (level, series_id, energy_type, target_month, model, horizon, point,
                                                lo80, hi80, lo95, hi95, issued_at)
                   VALUES ('household', %s, 'electricity', '2024-03-01', %s, 2, %s, 0, 0, 0, 0, %s)""",
                (h.device_id, settings.rules.projection.model, point, issued))
        conn.commit()

    def daily(first: int, days: int) -> list[Reading]:
        return [Reading(h.device_id, "electricity", d, start + timedelta(days=d + 1), 86400, 15.0, 15.0 * (d + 1),
                        "kWh") for d in range(first, first + days)]

    options = dataclasses.replace(sink_options(settings), rule_options={"projection": projection_options(settings)})
    job = StreamJob.from_settings(settings, spark, checkpoint_dir=tmp_path / "ckpt", options=options)
    job.start()
    notifier = NotifierThread(build_notifier(settings))
    try:
        # 10 days × 15 = 150 kWh; + 400 × 21/31 ≈ 421 projected > 400: warn now, in March, before it happens
        produce(settings, daily(0, 10))
        wait_for(lambda: job.stats.inserted >= 10, 90, "first ten days")
        produce(settings, daily(0, 10))                 # the same batch replayed: duplicates only
        wait_for(lambda: job.stats.rows >= 20, 60, "replayed days")
        produce(settings, daily(10, 5))                 # a later batch, same month, still projected over 400
        wait_for(lambda: job.stats.inserted >= 15, 60, "five more days")
        wait_for(lambda: len(slack.posts()) >= 1 and all(n[3] == "sent" for n in notifications(settings)), 30,
                 "delivery")
    finally:
        notifier.stop()
        job.stop()
    assert [n[:4] for n in notifications(settings)] == [("projection", "active", "raised", "sent")]
    with connect(settings) as conn:
        alert = conn.execute("SELECT period, observed, reference, detail FROM alerts WHERE rule = 'projection'"
                             ).fetchone()
    assert alert is not None
    period, observed, reference, detail = alert
    assert (period.isoformat(), reference, detail["tier"], detail["so_far"]) == ("2024-03-01", 400.0, 3, 150.0)
    assert observed == pytest.approx(150 + 400 * 21 / 31, abs=0.01) and detail["projected_bill_krw"] > 0
    [post] = slack.posts()
    assert "1동 202호" in post["text"] and "이번 달 예상 전력 사용량 421 kWh — 누진 3단계 진입 예상" in post["text"]
