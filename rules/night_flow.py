"""``night_flow``: water flowing in every hour of N consecutive night hours (a leak); resolves when a
later night shows a dry hour. Its observed value and reference are *hours* of flow, not the meter's unit
(:data:`UNIT`, the one place that says so), and its period is a night (a date), not a month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple
from zoneinfo import ZoneInfo

from apt_energy.rules.base import Alert, Batch, Outcome, Rule, Severity, require

UNIT = "h"   # what night_flow alerts measure: hours of flow in a row (their stored ``unit`` is the meter's)


@dataclass(frozen=True)
class NightFlowRule:
    """``rules.night_flow``."""

    meters: tuple[str, ...]
    night_start_hour: int
    night_end_hour: int
    min_hours: int
    min_flow_per_hour: dict[str, float]
    severity: str = "critical"

    def __post_init__(self) -> None:
        require(0 <= self.night_start_hour < self.night_end_hour <= 24, "night_end_hour",
                "0 ≤ night_start_hour < night_end_hour ≤ 24", (self.night_start_hour, self.night_end_hour))
        require(1 <= self.min_hours <= self.night_end_hour - self.night_start_hour, "min_hours",
                "an integer from 1 to the night's length in hours", self.min_hours)
        require(self.severity in ("warning", "critical"), "severity", "warning or critical", self.severity)


@dataclass(frozen=True)
class Interval:
    ts: datetime          # end of the interval, UTC
    interval_s: int
    value: Decimal

    @property
    def start(self) -> datetime:
        return self.ts - timedelta(seconds=self.interval_s)

    @property
    def rate_per_hour(self) -> float:
        return float(self.value) * 3600 / self.interval_s


def night_of(ts: datetime, tz: ZoneInfo, rule: NightFlowRule) -> date | None:
    """The local date whose night window holds the interval ending at ``ts``, if any."""
    local_last = (ts - timedelta(seconds=1)).astimezone(tz)
    return local_last.date() if rule.night_start_hour <= local_last.hour < rule.night_end_hour else None


def night_window(night: date, tz: ZoneInfo, rule: NightFlowRule) -> tuple[datetime, datetime]:
    """UTC bounds of a night: [night + start hour, night + end hour) local."""
    start = datetime(night.year, night.month, night.day, rule.night_start_hour, tzinfo=tz)
    end = datetime(night.year, night.month, night.day, 0, tzinfo=tz) + timedelta(hours=rule.night_end_hour)
    return start, end


@dataclass(frozen=True)
class NightVerdict:
    longest_flow_h: float     # longest run of consecutive flowing hours inside the window
    dry: bool                 # some reading inside the window showed (almost) no flow


def judge_night(readings: Sequence[Interval], window: tuple[datetime, datetime], min_flow: float) -> NightVerdict:
    """Consecutive flow inside the window: readings must be inside it, back to back, each flowing."""
    start, end = window
    inside = sorted((r for r in readings if r.start >= start and r.ts <= end), key=lambda r: r.ts)
    longest = run = 0.0
    previous_end: datetime | None = None
    dry = False
    for r in inside:
        flowing = r.rate_per_hour >= min_flow
        dry = dry or not flowing
        if flowing and (previous_end is None or r.start == previous_end):
            run += r.interval_s / 3600
        else:
            run = r.interval_s / 3600 if flowing else 0.0
        previous_end = r.ts
        longest = max(longest, run)
    return NightVerdict(longest, dry)


def night_flow_alert(household_id: int, meter: str, night: date, verdict: NightVerdict,
                     rule: NightFlowRule) -> Alert | None:
    """A leak alert when the night's longest flowing run reaches ``rule.min_hours``."""
    if verdict.longest_flow_h < rule.min_hours:
        return None
    severity: Severity = "warning" if rule.severity == "warning" else "critical"
    return Alert(household_id, meter, night, "night_flow", severity, verdict.longest_flow_h,
                 float(rule.min_hours), {"min_flow_per_hour": rule.min_flow_per_hour.get(meter)})


@dataclass(frozen=True)
class NightKey:
    """One night of one household's meter."""

    household_id: int
    meter: str
    night: date


@dataclass(frozen=True)
class OpenLeak:
    """An active night_flow alert: its id and the night it was raised for."""

    alert_id: int
    night: date


NightDecisions = Outcome   # raise_alerts; resolve_ids: stored alerts; resolve_raised: this batch's, already over


def night_flow_decisions(verdicts: Mapping[NightKey, NightVerdict], open_leaks: Mapping[tuple[int, str], OpenLeak],
                         rule: NightFlowRule) -> NightDecisions:
    """What the nights a batch touched mean, night by night in date order: a household meter with an
    open leak resolves it on a later night that shows a dry reading (and raises nothing else until
    then: one alert per leak, not one per night); one without raises an alert for a leaking night."""
    open_now: dict[tuple[int, str], OpenLeak | Alert] = dict(open_leaks)
    raised: list[Alert] = []
    resolved: list[int] = []
    resolved_raised: list[Alert] = []
    for key in sorted(verdicts, key=lambda k: (k.night, k.household_id, k.meter)):
        verdict = verdicts[key]
        where = (key.household_id, key.meter)
        leak = open_now.get(where)
        if leak is not None:
            opened = leak.night if isinstance(leak, OpenLeak) else leak.period
            if verdict.dry and key.night > opened:
                if isinstance(leak, OpenLeak):
                    resolved.append(leak.alert_id)
                else:
                    resolved_raised.append(leak)
                del open_now[where]
            continue
        alert = night_flow_alert(key.household_id, key.meter, key.night, verdict, rule)
        if alert is not None:
            raised.append(alert)
            open_now[where] = alert
    return NightDecisions(raised, resolved, resolved_raised)


# ------------------------------------------------------------------------------ its inputs (SQL)


class TouchedNight(NamedTuple):
    household_id: int
    meter: str
    night: date


class NightReading(NamedTuple):
    household_id: int
    meter: str
    night: date
    ts: datetime
    interval_s: int
    value: Decimal


class ActiveLeak(NamedTuple):
    id: int
    household_id: int
    energy_type: str
    period: date


# Nights touched by this batch's new readings (read back by ingestion time in the batch's transaction).
TOUCHED_NIGHTS = """
SELECT DISTINCT household_id, meter, ((ts - interval '1 second') AT TIME ZONE %s)::date AS night
FROM meter_readings
WHERE ingested_at = now() AND meter = ANY(%s)
  AND extract(hour FROM (ts - interval '1 second') AT TIME ZONE %s) >= %s
  AND extract(hour FROM (ts - interval '1 second') AT TIME ZONE %s) < %s"""

# Every stored reading inside those nights' windows.
NIGHT_READINGS = """
SELECT w.household_id, w.meter, w.night, r.ts, r.interval_s, r.value
FROM unnest(%s::int[], %s::text[], %s::date[], %s::timestamptz[], %s::timestamptz[])
     AS w(household_id, meter, night, lo, hi)
JOIN meter_readings r ON r.household_id = w.household_id AND r.meter = w.meter
     AND r.ts > w.lo AND r.ts <= w.hi"""

ACTIVE_LEAKS = """
SELECT id, household_id, energy_type, period FROM alerts
WHERE rule = 'night_flow' AND state = 'active' AND household_id = ANY(%s)"""


def evaluate(batch: Batch, rule: NightFlowRule) -> Outcome:
    """The nights the batch's new readings fall in, judged whole (a night spans batches)."""
    meters = [m for m in rule.meters if m in {c.energy_type for c in batch.changes}]
    if not meters:
        return NightDecisions([], [], [])
    name, tz = batch.timezone, ZoneInfo(batch.timezone)
    touched = batch.db.rows(TOUCHED_NIGHTS, (name, meters, name, rule.night_start_hour, name, rule.night_end_hour),
                            TouchedNight)
    if not touched:
        return NightDecisions([], [], [])
    windows = {NightKey(t.household_id, t.meter, t.night): night_window(t.night, tz, rule) for t in touched}
    keys = list(windows)
    readings = batch.db.rows(NIGHT_READINGS, (
        [k.household_id for k in keys], [k.meter for k in keys], [k.night for k in keys],
        [windows[k][0] for k in keys], [windows[k][1] for k in keys]), NightReading)
    per_window: dict[NightKey, list[Interval]] = defaultdict(list)
    for r in readings:
        per_window[NightKey(r.household_id, r.meter, r.night)].append(Interval(r.ts, r.interval_s, r.value))
    active = batch.db.rows(ACTIVE_LEAKS, ([k.household_id for k in keys],), ActiveLeak)
    verdicts = {k: judge_night(per_window.get(k, []), windows[k], rule.min_flow_per_hour.get(k.meter, 0))
                for k in keys}
    open_leaks = {(a.household_id, a.energy_type): OpenLeak(a.id, a.period) for a in active}
    return night_flow_decisions(verdicts, open_leaks, rule)


RULE = Rule(key="night_flow", description="water flowing through N consecutive night hours (a leak)",
            params=NightFlowRule, evaluate=evaluate, names=("night_flow",), order=30, observed_unit=UNIT,
            period_format="%Y-%m-%d")
