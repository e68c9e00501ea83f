"""Alert rules as pure functions over the rows a batch changed. The sink feeds them and stores the
alerts in the same transaction as the usage, so a replayed batch cannot raise an alert twice.

* ``threshold`` / ``threshold_critical``: month-to-date usage crosses the configured level (once per
  household, energy type and month — the crossing happens in exactly one batch);
* ``night_flow``: water flowing in every hour of N consecutive night hours (a leak); resolves when a
  later night shows a dry hour;
* ``peer``: a household's month far above its building's peers (robust z-score on the median and
  MAD, and at least ``min_ratio`` × the median).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from apt_energy.config.settings import NightFlowRule, PeerRule, Threshold

RuleName = Literal["threshold", "threshold_critical", "night_flow", "peer"]
Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Alert:
    """One alert to raise (stored once per household, energy type, period and rule)."""

    household_id: int
    energy_type: str
    period: date
    rule: RuleName
    severity: Severity
    observed: float
    reference: float
    detail: dict[str, object] = field(default_factory=dict, compare=False)


# ------------------------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class UsageChange:
    """One energy_usage row a batch changed: month-to-date before and after."""

    household_id: int
    energy_type: str
    month: date
    before: Decimal
    after: Decimal


def threshold_crossings(changes: Iterable[UsageChange], thresholds: Mapping[str, Threshold]) -> list[Alert]:
    """Alerts for the months whose usage crossed a level in this batch (before < level ≤ after)."""
    out = []
    levels: tuple[tuple[RuleName, Severity], ...] = (("threshold", "warning"), ("threshold_critical", "critical"))
    for c in changes:
        level = thresholds.get(c.energy_type)
        if level is None:
            continue
        for (rule, severity), limit in zip(levels, (level.warning, level.critical), strict=True):
            if c.before < Decimal(str(limit)) <= c.after:
                out.append(Alert(c.household_id, c.energy_type, c.month, rule, severity, float(c.after), limit))
    return out


# ------------------------------------------------------------------------------------ night flow


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


@dataclass(frozen=True)
class NightDecisions:
    raise_alerts: list[Alert]
    resolve_ids: list[int]          # stored alerts to resolve
    resolve_raised: list[Alert]     # alerts raised by this same batch and already over (a dry later night)


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


# ------------------------------------------------------------------------------------------ peers


def robust_z(values: Sequence[float]) -> tuple[float, float]:
    """Median and the MAD scaled to a normal sigma (1.4826 · MAD)."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values) * 1.4826
    return median, mad


def peer_outliers(amounts: dict[int, float], energy_type: str, month: date, rule: PeerRule) -> list[Alert]:
    """Households far above their building's median for the month."""
    if len(amounts) < rule.min_peers:
        return []
    median, sigma = robust_z(list(amounts.values()))
    out = []
    for household, x in amounts.items():
        if median <= 0 or x < rule.min_ratio * median:
            continue
        z = (x - median) / sigma if sigma > 0 else float("inf")
        if z >= rule.z_warning:
            out.append(Alert(household, energy_type, month, "peer", "warning", x, median,
                             {"z": round(z, 2) if z != float("inf") else None, "peers": len(amounts)}))
    return out
