"""Alert rules as pure functions over the rows a batch changed. The sink feeds them and stores the
alerts in the same transaction as the usage, so a replayed batch cannot raise an alert twice.

* ``threshold`` / ``threshold_critical``: month-to-date usage crosses the configured level (once per
  household, energy type and month — the crossing happens in exactly one batch);
* ``night_flow``: water flowing in every hour of N consecutive night hours (a leak); resolves when a
  later night shows a dry hour;
* ``peer``: a household's month far above its building's peers (robust z-score on the median and
  MAD, and at least ``min_ratio`` × the median);
* ``projection``: the month's projected total (usage so far + the forecast's share of the days left)
  crosses electricity's next progressive tier or a configured line before the month does (once per
  household, energy type and month).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

from apt_energy.config.settings import NightFlowRule, PeerRule, Threshold

RuleName = Literal["threshold", "threshold_critical", "night_flow", "peer", "projection"]
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


# ------------------------------------------------------------------------------------ projection


class Projection(NamedTuple):
    so_far: float
    projected: float


def project(*, so_far: float, days_elapsed: float, days_in_month: int, forecast_month: float) -> Projection:
    """Projected month total = so far + forecast × (days left / days in month); never below so far.

    The forecast's share of the days left, not a pro-rata of the month so far: early in the month a few
    days say little, the forecast (seasonal, per household) says more; late in the month the actual
    usage dominates."""
    left = min(max(days_in_month - days_elapsed, 0.0), days_in_month) / days_in_month
    return Projection(so_far, so_far + max(forecast_month, 0.0) * left)


BillEstimate = Callable[[str, date, float], float | None]


@dataclass(frozen=True)
class ProjectionOptions:
    """The projection rule's inputs besides the batch: plain data the application composes from the
    tariffs (tier bands by month) and the config (``rules.projection``); the spark stage never reads
    tariffs itself."""

    tier_limits: Mapping[date, tuple[float, ...]]   # month → upper kWh of tiers 1, 2, … (e.g. (200, 400))
    thresholds: Mapping[str, float] = field(default_factory=dict)   # energy key → month-total line
    from_tier: int = 3
    min_days: float = 3.0
    model: str = "ets"
    tier_meter: str = "electricity"
    estimate_bill: BillEstimate | None = None        # (energy, month, projected) → KRW, for the message

    @property
    def meters(self) -> frozenset[str]:
        """The energy types the rule looks at."""
        return frozenset(self.thresholds) | ({self.tier_meter} if self.tier_limits else frozenset())


@dataclass(frozen=True)
class MonthSoFar:
    """One household-month a batch changed, as the projection sees it."""

    household_id: int
    energy_type: str
    month: date
    so_far: float              # month-to-date usage
    days_elapsed: float        # event time: the latest reading's end, in days since the local month start
    forecast: float | None     # the month's forecast total (None: no forecast, no projection)


def days_in(month: date) -> int:
    """Days of the calendar month starting at ``month``."""
    nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return (nxt - month).days


def projection_alerts(items: Iterable[MonthSoFar], options: ProjectionOptions) -> list[Alert]:
    """Household-months whose projected total crosses a line they have not reached yet.

    Lines: electricity's tier limits of the month from tier ``from_tier`` up (billed on whole kWh, so
    the comparison is too: 400.9 kWh is still tier 2) and the energy type's configured threshold. The
    lowest line between the usage so far and the projection is the one warned about; a month already
    past every line, or without a forecast, raises nothing."""
    out = []
    for m in items:
        if m.forecast is None or m.days_elapsed < options.min_days:
            continue
        p = project(so_far=m.so_far, days_elapsed=m.days_elapsed, days_in_month=days_in(m.month),
                    forecast_month=m.forecast)
        lines: list[tuple[float, int | None]] = []
        if m.energy_type == options.tier_meter:
            limits = options.tier_limits.get(m.month, ())
            lines += [(float(limit), tier) for tier, limit in enumerate(limits, start=2) if tier >= options.from_tier]
        threshold = options.thresholds.get(m.energy_type)
        if threshold is not None:
            lines.append((float(threshold), None))
        crossed = []
        for limit, tier in lines:
            now, then = (math.floor(p.so_far), math.floor(p.projected)) if tier else (p.so_far, p.projected)
            if now <= limit < then:
                crossed.append((limit, tier))
        if not crossed:
            continue
        limit, tier = min(crossed, key=lambda c: c[0])
        detail: dict[str, object] = {
            "kind": "tier" if tier else "threshold", "tier": tier, "so_far": round(p.so_far, 3),
            "forecast": round(m.forecast, 3), "days_elapsed": round(m.days_elapsed, 2), "model": options.model}
        if options.estimate_bill is not None:
            detail["projected_bill_krw"] = options.estimate_bill(m.energy_type, m.month, p.projected)
        out.append(Alert(m.household_id, m.energy_type, m.month, "projection", "warning", round(p.projected, 3),
                         limit, detail))
    return out
