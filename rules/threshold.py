"""``threshold`` / ``threshold_critical``: month-to-date usage crosses the configured level (once per
household, energy type and month — the crossing happens in exactly one batch). The critical level is the
same rule's second level, raised under its own name."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from apt_energy.rules.base import Alert, Batch, Outcome, Rule, Severity, require


@dataclass(frozen=True)
class Threshold:
    """One energy type's levels (``rules.thresholds.<energy>``)."""

    warning: float
    critical: float

    def __post_init__(self) -> None:
        require(0 < self.warning <= self.critical, "critical", "a number ≥ warning > 0", self.critical)


Thresholds = dict[str, Threshold]   # energy key → levels


@dataclass(frozen=True)
class UsageChange:
    """One energy_usage row a batch changed: month-to-date before and after."""

    household_id: int
    energy_type: str
    month: date
    before: Decimal
    after: Decimal


LEVELS: tuple[tuple[str, Severity], ...] = (("threshold", "warning"), ("threshold_critical", "critical"))


def threshold_crossings(changes: Iterable[UsageChange], thresholds: Mapping[str, Threshold]) -> list[Alert]:
    """Alerts for the months whose usage crossed a level in this batch (before < level ≤ after)."""
    out = []
    for c in changes:
        level = thresholds.get(c.energy_type)
        if level is None:
            continue
        for (rule, severity), limit in zip(LEVELS, (level.warning, level.critical), strict=True):
            if c.before < Decimal(str(limit)) <= c.after:
                out.append(Alert(c.household_id, c.energy_type, c.month, rule, severity, float(c.after), limit))
    return out


def evaluate(batch: Batch, params: Thresholds) -> Outcome:
    """The batch's own before/after sums are the rule's whole input: no query."""
    usage = [UsageChange(c.household_id, c.energy_type, c.month, c.before, c.after) for c in batch.changes]
    return Outcome(threshold_crossings(usage, params))


def _energy_keys(params: Any) -> Mapping[str, Collection[str]]:
    return {"": list(params)}


RULE = Rule(key="thresholds", description="month-to-date usage crosses the warning or the critical level",
            params=Thresholds, evaluate=evaluate, names=tuple(name for name, _ in LEVELS), order=10,
            energy_keys=_energy_keys)
