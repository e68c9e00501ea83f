"""The alert lifecycle's pure parts: who may take which step, whether a button press counts, quiet
hours, and digests within Slack's limits."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest
from apt_energy.alerts import MessageStyle, Notice, QuietHours, digests, render_case
from apt_energy.alerts.buttons import Origin, Press, judge
from apt_energy.alerts.lifecycle import Case, refusal
from apt_energy.alerts.message import MAX_BLOCKS, MAX_SECTION_CHARS
from apt_energy.config import Settings
from apt_energy.core.errors import ConfigError

from apt_energy import config

pytestmark = pytest.mark.unit

OPEN = Case(id=7, state="active", severity="warning", acknowledged_by=None, acknowledged_at=None, assignee=None,
            resolved_by=None, escalation=0)


def test_a_step_already_taken_is_refused_so_a_double_press_changes_nothing() -> None:
    assert refusal(OPEN, "acknowledged", "U1") is None
    acked = dataclasses.replace(OPEN, acknowledged_by="U1")
    assert "already acknowledged by U1" in (refusal(acked, "acknowledged", "U2") or "")
    assert refusal(acked, "assigned", "U2") is None and refusal(acked, "resolved", "U2") is None
    assert "already assigned" in (refusal(dataclasses.replace(OPEN, assignee="U2"), "assigned", "U2") or "")
    assert "already resolved (by the rule)" in (refusal(dataclasses.replace(OPEN, state="resolved"), "acknowledged",
                                                        "U1") or "")
    assert refusal(None, "resolved", "U1") == "no such alert"


ORIGIN = Origin("A1", "T1")


def envelope(**payload: object) -> dict[str, object]:
    base: dict[str, object] = {"type": "block_actions", "api_app_id": "A1", "team": {"id": "T1"},
                               "user": {"id": "U1", "team_id": "T1"},
                               "actions": [{"action_id": "apt_energy_ack", "value": "42"}]}
    return {"type": "interactive", "envelope_id": "e1", "payload": base | payload}


def test_a_press_from_our_app_team_and_an_operator_counts() -> None:
    assert judge(envelope(), origin=ORIGIN, operators={"U1"}) == Press("e1", "U1", "acknowledged", 42)


@pytest.mark.parametrize(("payload", "why"), [
    ({"api_app_id": "A2"}, "another app"),
    ({"team": {"id": "T2"}}, "another workspace"),
    ({"user": {"id": "U1", "team_id": "T2"}}, "another workspace"),
    ({"user": {"id": "U9", "team_id": "T1"}}, "not one of alerts.operators"),
    ({"type": "view_submission"}, "not a button press"),
    ({"actions": [{"action_id": "delete_everything", "value": "42"}]}, "not one of our buttons"),
    ({"actions": [{"action_id": "apt_energy_ack", "value": "x"}]}, "without an alert id"),
])
def test_a_forged_or_foreign_press_is_refused_with_the_reason(payload: dict[str, object], why: str) -> None:
    verdict = judge(envelope(**payload), origin=ORIGIN, operators={"U1"})
    assert isinstance(verdict, str) and why in verdict


def test_without_a_configured_app_every_press_is_refused() -> None:
    assert isinstance(judge(envelope(), origin=Origin("", ""), operators={"U1"}), str)


def test_warnings_wait_in_their_quiet_hours_in_the_complexs_time_zone_and_critical_never_waits() -> None:
    quiet = QuietHours.parse("Asia/Seoul", {"warning": "22:00-07:00"})
    assert quiet.asleep(datetime(2024, 8, 1, 14, 0, tzinfo=UTC)) == ("warning",)   # 23:00 in Seoul
    assert quiet.asleep(datetime(2024, 8, 1, 21, 59, tzinfo=UTC)) == ("warning",)  # 06:59 in Seoul
    assert quiet.asleep(datetime(2024, 8, 1, 22, 0, tzinfo=UTC)) == ()             # 07:00: morning
    assert quiet.asleep(datetime(2024, 8, 1, 3, 0, tzinfo=UTC)) == ()              # noon
    day = QuietHours.parse("Asia/Seoul", {"warning": "12:00-13:00"})
    assert day.asleep(datetime(2024, 8, 1, 3, 30, tzinfo=UTC)) == ("warning",)


@pytest.mark.parametrize("window", ["22-07", "25:00-07:00", "07:00-07:00"])
def test_a_bad_quiet_window_fails_with_the_expected_form(window: str) -> None:
    with pytest.raises(ConfigError, match=r"alerts\.quiet_hours"):
        QuietHours.parse("Asia/Seoul", {"warning": window})


@pytest.fixture(scope="module")
def settings() -> Settings:
    return config.load(environ={})


NOTICE = Notice(id=1, kind="raised", alert_id=1, rule="threshold", severity="warning", energy_type="electricity",
                period=date(2024, 8, 1), observed=510.0, reference=500.0, unit="kWh", building=1, floor=2, unit_no=2)


def test_a_burst_of_500_notifications_fits_slacks_limits_and_lists_each_once(settings: Settings) -> None:
    notices = [dataclasses.replace(NOTICE, id=i, alert_id=i) for i in range(500)]
    out = digests(notices, MessageStyle.from_settings(settings))
    assert sorted(n.id for group, _ in out for n in group) == list(range(500))
    for group, message in out:
        assert len(message.blocks) <= MAX_BLOCKS and str(len(group)) in message.text
        assert all(len(b["text"]["text"]) <= MAX_SECTION_CHARS for b in message.blocks if b["type"] == "section")
    long = [dataclasses.replace(n, detail={}, rule="projection") for n in notices[:3]]
    assert digests(long, MessageStyle.from_settings(settings))


def test_the_edited_message_shows_the_case_and_drops_the_buttons_once_resolved(settings: Settings) -> None:
    style = MessageStyle.from_settings(dataclasses.replace(settings, slack=dataclasses.replace(settings.slack,
                                                                                                language="en")))
    acked = dataclasses.replace(NOTICE, kind="acknowledged", acknowledged_by="U0ALICE", assignee="bob",
                                acknowledged_at=datetime(2024, 8, 1, 1, tzinfo=UTC), note="on my way")
    blocks = render_case(acked, style).blocks
    case = next(b for b in blocks if b["type"] == "context")["elements"][0]["text"]
    assert "<@U0ALICE>" in case and "assigned to bob" in case and "on my way" in case
    assert any(b["type"] == "actions" for b in blocks)
    done = dataclasses.replace(acked, kind="resolved", state="resolved", resolved_by="U0BOB")
    assert not any(b["type"] == "actions" for b in render_case(done, style).blocks)
