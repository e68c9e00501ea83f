"""Message text of the projection alert, in Korean and English."""

from __future__ import annotations

import dataclasses
from datetime import date

import pytest
from apt_energy.alerts.message import MessageStyle, render
from apt_energy.alerts.outbox import Notice

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
PROJECTION = Notice(id=1, kind="raised", alert_id=1, rule="projection", severity="warning", energy_type="electricity",
                    period=date(2024, 3, 1), observed=423.4, reference=400.0, unit="kWh", building=3, floor=12,
                    unit_no=1, detail={"kind": "tier", "tier": 3, "projected_bill_krw": 99150.0})


def style(language: str) -> MessageStyle:
    return MessageStyle.from_settings(dataclasses.replace(SETTINGS, slack=dataclasses.replace(
        SETTINGS.slack, language=language)))


def test_projection_message_names_the_projected_month_the_tier_and_the_bill_in_korean() -> None:
    text = render(PROJECTION, style("ko")).text
    assert "3동 1201호" in text and "이번 달 예상 전력 사용량 423 kWh — 누진 3단계 진입 예상" in text
    assert "예상 요금 99,150원" in text


def test_projection_message_in_english() -> None:
    text = render(PROJECTION, style("en")).text
    assert "projected at 423 kWh — expected to enter progressive tier 3 (projected bill 99,150 KRW)" in text


def test_projection_message_for_a_threshold_without_a_bill() -> None:
    notice = dataclasses.replace(PROJECTION, energy_type="heating", unit="Mcal", observed=1290.0, reference=1200.0,
                                 detail={"kind": "threshold", "tier": None})
    text = render(notice, style("ko")).text
    assert "기준치 1,200.0 Mcal 초과 예상" in text and "요금" not in text
