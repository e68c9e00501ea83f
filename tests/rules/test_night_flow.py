"""The night-flow rule (rules/night_flow.py): consecutive night hours of flow, one alert per leak."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from apt_energy import config, rules

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
SEOUL = ZoneInfo("Asia/Seoul")
NIGHT = SETTINGS.rules.night_flow


def hours(start_local: datetime, values: list[float]) -> list[rules.Interval]:
    out = []
    for i, v in enumerate(values):
        end = (start_local + timedelta(hours=i + 1)).astimezone(UTC)
        out.append(rules.Interval(end, 3600, Decimal(str(v))))
    return out


def test_night_flow_needs_consecutive_flowing_hours_inside_the_window() -> None:
    night = date(2024, 5, 10)
    window = rules.night_window(night, SEOUL, NIGHT)
    assert window[0] == datetime(2024, 5, 10, 0, tzinfo=SEOUL)
    start = datetime(2024, 5, 10, 0, tzinfo=SEOUL)
    leak = rules.judge_night(hours(start, [0.012] * 6), window, 0.004)
    assert leak.longest_flow_h == 6 and not leak.dry
    assert rules.night_flow_alert(7, "water", night, leak, NIGHT) is not None
    broken = rules.judge_night(hours(start, [0.012, 0.012, 0.012, 0.001, 0.012, 0.012]), window, 0.004)
    assert broken.longest_flow_h == 3 and broken.dry
    assert rules.night_flow_alert(7, "water", night, broken, NIGHT) is None
    quiet = rules.judge_night(hours(start, [0.002] * 6), window, 0.004)
    assert quiet.longest_flow_h == 0 and quiet.dry
    # a 6-hour reading covering the whole night counts as 6 hours of flow
    six = rules.judge_night([rules.Interval(window[1], 6 * 3600, Decimal("0.07"))], window, 0.004)
    assert six.longest_flow_h == 6


def test_night_of_a_reading_uses_the_last_instant_of_its_interval() -> None:
    end_at_1am = datetime(2024, 5, 10, 1, tzinfo=SEOUL).astimezone(UTC)
    assert rules.night_of(end_at_1am, SEOUL, NIGHT) == date(2024, 5, 10)
    assert rules.night_of(datetime(2024, 5, 10, 7, tzinfo=SEOUL).astimezone(UTC), SEOUL, NIGHT) is None


LEAK = rules.NightVerdict(longest_flow_h=6, dry=False)
DRY = rules.NightVerdict(longest_flow_h=0, dry=True)


def nights(*verdicts: rules.NightVerdict, start: date = date(2024, 5, 10)) -> dict[rules.NightKey, rules.NightVerdict]:
    return {rules.NightKey(7, "water", start + timedelta(days=i)): v for i, v in enumerate(verdicts)}


def test_a_leak_raises_once_however_many_nights_it_lasts() -> None:
    d = rules.night_flow_decisions(nights(LEAK, LEAK, LEAK), {}, NIGHT)
    assert [(a.household_id, a.period, a.rule) for a in d.raise_alerts] == [(7, date(2024, 5, 10), "night_flow")]
    assert d.resolve_ids == [] and d.resolve_raised == []


def test_an_open_leak_resolves_on_a_later_dry_night_only() -> None:
    open_leak = {(7, "water"): rules.OpenLeak(41, date(2024, 5, 10))}
    assert rules.night_flow_decisions(nights(DRY), open_leak, NIGHT).resolve_ids == []     # its own night
    later = rules.night_flow_decisions(nights(LEAK, DRY), open_leak, NIGHT)
    assert later.resolve_ids == [41] and later.raise_alerts == []
    # after resolving, a new leak in the same batch is a new alert
    again = rules.night_flow_decisions(nights(LEAK, DRY, LEAK), open_leak, NIGHT)
    assert again.resolve_ids == [41] and [a.period for a in again.raise_alerts] == [date(2024, 5, 12)]


def test_a_leak_raised_and_over_within_one_batch_is_raised_and_resolved() -> None:
    d = rules.night_flow_decisions(nights(LEAK, DRY), {}, NIGHT)
    assert d.raise_alerts == d.resolve_raised and len(d.raise_alerts) == 1


def test_a_quiet_night_without_an_open_leak_decides_nothing() -> None:
    assert rules.night_flow_decisions(nights(DRY, DRY), {}, NIGHT) == rules.NightDecisions([], [], [])
