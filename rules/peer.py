"""``peer``: a household's month far above its building's peers (robust z-score on the median and MAD,
and at least ``min_ratio`` × the median), judged once the month has ``min_days`` days of data."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from apt_energy.rules.base import Alert, Batch, Outcome, Rule


@dataclass(frozen=True)
class PeerRule:
    """``rules.peer``."""

    min_peers: int
    z_warning: float
    min_ratio: float
    min_days: int


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


class PeerAmount(NamedTuple):
    building_id: int
    meter: str
    month: date
    household_id: int
    amount: float


# Every covered household-month of the buildings, meters and months the batch changed.
PEER_AMOUNTS = """
SELECT h.building_id, et.key AS meter, u.usage_date AS month, u.household_id, u.amount
FROM energy_usage u JOIN households h ON h.id = u.household_id
JOIN energy_types et ON et.label_ko = u.energy_type
JOIN unnest(%s::int[], %s::text[], %s::date[]) AS g(building_id, meter, month)
  ON g.building_id = h.building_id AND g.meter = et.key AND g.month = u.usage_date
WHERE u.covered_s >= %s"""


def evaluate(batch: Batch, rule: PeerRule) -> Outcome:
    """Only groups where a changed month is covered enough are read (most batches: none)."""
    min_covered = rule.min_days * 86400
    groups = sorted({(c.building_id, c.energy_type, c.month) for c in batch.changes if c.covered_s >= min_covered})
    if not groups:
        return Outcome([])
    rows = batch.db.rows(PEER_AMOUNTS, ([g[0] for g in groups], [g[1] for g in groups], [g[2] for g in groups],
                                        min_covered), PeerAmount)
    by_group: dict[tuple[int, str, date], dict[int, float]] = defaultdict(dict)
    for r in rows:
        by_group[(r.building_id, r.meter, r.month)][r.household_id] = float(r.amount)
    out: list[Alert] = []
    for (_, meter, month), amounts in by_group.items():
        out += peer_outliers(amounts, meter, month, rule)
    return Outcome(out)


RULE = Rule(key="peer", description="a household's month far above its building's median (robust z-score)",
            params=PeerRule, evaluate=evaluate, names=("peer",), order=20)
