from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from apt_energy.spark import rules

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
SEOUL = ZoneInfo("Asia/Seoul")
NIGHT = SETTINGS.rules.night_flow


def change(before: str, after: str, energy: str = "electricity") -> rules.UsageChange:
    return rules.UsageChange(1, energy, date(2024, 8, 1), Decimal(before), Decimal(after))


def test_threshold_fires_once_on_the_crossing_only() -> None:
    t = SETTINGS.rules.thresholds
    assert [a.rule for a in rules.threshold_crossings([change("490", "505")], t)] == ["threshold"]
    assert rules.threshold_crossings([change("505", "520")], t) == []      # crossing again: nothing
    assert rules.threshold_crossings([change("100", "499.999")], t) == []
    both = rules.threshold_crossings([change("400", "750")], t)
    assert [(a.rule, a.severity) for a in both] == [("threshold", "warning"), ("threshold_critical", "critical")]
    assert both[0].observed == 750 and both[0].reference == 500
    assert rules.threshold_crossings([change("0", "1000", "gas")], t) == []


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


def test_peer_rule_flags_only_far_outliers() -> None:
    rule = SETTINGS.rules.peer
    amounts = {i: 300.0 + (i % 7) * 5 for i in range(40)}
    assert rules.peer_outliers(amounts, "electricity", date(2024, 8, 1), rule) == []
    amounts[99] = 700.0
    [alert] = rules.peer_outliers(amounts, "electricity", date(2024, 8, 1), rule)
    assert (alert.household_id, alert.rule, alert.reference) == (99, "peer", 315.0)
    assert rules.peer_outliers({1: 10.0, 2: 100.0}, "water", date(2024, 8, 1), rule) == []  # too few peers


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
