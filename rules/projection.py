"""``projection``: the month's projected total (usage so far + the forecast's share of the days left)
crosses electricity's next progressive tier or a configured line before the month does (once per
household, energy type and month). :func:`forecast_share` is the one projection formula: billing's
projected bills use it too."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from apt_energy.rules.base import Alert, Batch, Outcome, Rule, require


@dataclass(frozen=True)
class ProjectionRule:
    """Month-end projection (usage so far + the forecast's share of the days left) crossing a line before
    the month does: electricity's next progressive tier (from the tariffs) or a configured threshold."""

    tiers: bool = True                 # warn before electricity enters a higher tier
    from_tier: int = 3                 # lowest tier worth a warning (2 = 200/300 kWh, 3 = 400/450 kWh)
    thresholds: dict[str, float] = field(default_factory=dict)   # energy key → month-total line
    min_days: float = 3.0              # project only once this many days of the month have data
    model: str = "pooled"              # usage_forecasts.model to project with (forecast/pooled.py)

    def __post_init__(self) -> None:
        require(2 <= self.from_tier <= 3, "from_tier", "2 or 3", self.from_tier)
        require(0 <= self.min_days <= 28, "min_days", "a number of days 0-28", self.min_days)
        require(all(v > 0 for v in self.thresholds.values()), "thresholds", "numbers > 0", self.thresholds)


class Projection(NamedTuple):
    so_far: float
    projected: float


def forecast_share(forecast_month: float, *, days_elapsed: float, days_in_month: float) -> float:
    """The forecast's share of the days left: forecast × (days left / days in month), never negative.

    The forecast's share of the days left, not a pro-rata of the month so far: early in the month a few
    days say little, the forecast (seasonal, per household) says more; late in the month the actual
    usage dominates."""
    left = min(max(days_in_month - days_elapsed, 0.0), days_in_month)
    return max(forecast_month, 0.0) * left / days_in_month


def project(*, so_far: float, days_elapsed: float, days_in_month: int, forecast_month: float) -> Projection:
    """Projected month total = so far + :func:`forecast_share`; never below so far."""
    return Projection(so_far, so_far + forecast_share(forecast_month, days_elapsed=days_elapsed,
                                                      days_in_month=days_in_month))


BillEstimate = Callable[[str, date, float], float | None]


@dataclass(frozen=True)
class ProjectionOptions:
    """The projection rule's inputs besides the batch: plain data the application composes from the
    tariffs (tier bands by month) and the config (``rules.projection``); no stage reads tariffs for it."""

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


# ------------------------------------------------------------------------------ its inputs (SQL)


class ProjectionInput(NamedTuple):
    household_id: int
    energy_type: str
    month: date
    so_far: Decimal
    forecast: float
    latest: datetime | None


# The projection's inputs per changed household-month: the latest issued household forecast of the
# configured model for that month (no forecast: no row) and the end of the month's latest reading;
# months that already have a projection alert are left out (one per household-month).
PROJECTION_INPUTS = """
SELECT k.household_id, k.meter AS energy_type, k.month, k.so_far, f.point AS forecast,
       (SELECT max(r.ts) FROM meter_readings r
        WHERE r.household_id = k.household_id AND r.meter = k.meter AND r.usage_month = k.month
          AND r.ts > k.lo AND r.ts <= k.hi) AS latest
FROM unnest(%s::int[], %s::text[], %s::date[], %s::numeric[], %s::timestamptz[], %s::timestamptz[])
     AS k(household_id, meter, month, so_far, lo, hi)
JOIN households h ON h.id = k.household_id
JOIN LATERAL (SELECT point FROM usage_forecasts f
              WHERE f.level = 'household' AND f.series_id = h.device_id AND f.energy_type = k.meter
                AND f.target_month = k.month AND f.model = %s
              ORDER BY f.issued_at DESC LIMIT 1) f ON true
WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.household_id = k.household_id AND a.energy_type = k.meter
                  AND a.period = k.month AND a.rule = 'projection')
"""


def evaluate(batch: Batch, rule: ProjectionRule) -> Outcome:
    """Month-end projections of the household-months this batch changed. Event time, not the wall
    clock: how far the month has got is where its latest stored reading ends (the demo runs simulated
    months in minutes). Off unless the application composed :class:`ProjectionOptions` (the tariffs'
    tiers, the bill estimate) for it."""
    options = batch.options.get(RULE.key)
    if not isinstance(options, ProjectionOptions):
        return Outcome([])
    keys = [c for c in batch.changes if c.energy_type in options.meters]
    if not keys:
        return Outcome([])
    tz = ZoneInfo(batch.timezone)
    starts = [datetime(c.month.year, c.month.month, 1, tzinfo=tz) for c in keys]
    ends = [datetime(c.month.year + c.month.month // 12, c.month.month % 12 + 1, 1, tzinfo=tz) for c in keys]
    found = batch.db.rows(PROJECTION_INPUTS, (
        [c.household_id for c in keys], [c.energy_type for c in keys], [c.month for c in keys],
        [c.after for c in keys], starts, ends, options.model), ProjectionInput)
    items = []
    for r in found:
        if r.latest is None:
            continue
        start = datetime(r.month.year, r.month.month, 1, tzinfo=tz)
        items.append(MonthSoFar(r.household_id, r.energy_type, r.month, float(r.so_far),
                                (r.latest - start).total_seconds() / 86400, r.forecast))
    return Outcome(projection_alerts(items, options))


def message_fields(detail: Mapping[str, object], observed: float, texts: Mapping[str, str],
                   fields: Mapping[str, object]) -> dict[str, object]:
    """The projection's own words: which line it crosses (a tier, or the threshold) and the bill."""
    tier = detail.get("tier")
    line = (texts["projection_tier"].format(tier=tier) if tier else texts["projection_threshold"].format(**fields))
    bill = detail.get("projected_bill_krw")
    return {"projected": f"{observed:,.0f}", "tier": tier or "", "line": line,
            "bill": texts["projection_bill"].format(bill=f"{bill:,.0f}") if isinstance(bill, int | float) else ""}


def _energy_keys(params: Any) -> Mapping[str, Collection[str]]:
    return {"thresholds": list(params.thresholds)}


RULE = Rule(key="projection", description="the month's projected total crosses the next tier or a line early",
            params=ProjectionRule, evaluate=evaluate, names=("projection",),
            messages=("projection_tier", "projection_threshold", "projection_bill"), order=40,
            default=ProjectionRule, fields=message_fields, energy_keys=_energy_keys)
