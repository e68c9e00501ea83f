"""One benchmark figure: a measured value next to the baseline measured in the same run.

Every bench module exposes ``figures() -> list[Figure]``; ``make bench`` runs them all and prints one
table (figure, value, baseline, ratio, goal), then appends the run as JSON under ``bench/results/``.
A ratio, not a raw rate, is what compares across machines and loads: both sides share the run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """``value`` against ``baseline_value`` (same unit, same run); ``goal`` is the wanted ratio, if any.

    ``higher_is_better`` is False for latencies: then the ratio is baseline / value, so above 1 is
    still better and one goal column reads the same way for every row.
    """

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    goal: float | None = None
    target: float | None = None     # an absolute goal on ``value`` (e.g. 25,000 readings/s), if the issue sets one
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float:
        top, bottom = (self.value, self.baseline_value) if self.higher_is_better else (self.baseline_value, self.value)
        return top / bottom if bottom else float("nan")

    @property
    def met(self) -> bool | None:
        """Both goals that are set hold; None when neither is set."""
        checks = []
        if self.goal is not None:
            checks.append(self.ratio >= self.goal)
        if self.target is not None:
            checks.append(self.value >= self.target if self.higher_is_better else self.value <= self.target)
        return all(checks) if checks else None
