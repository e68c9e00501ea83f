"""Month-end projection: usage so far plus the forecast share of the days left.

The tier line comes from billing (``apt_energy.billing.next_tier_limit``); the application layer
composes the two, since one stage does not import another.
"""

from __future__ import annotations

from typing import NamedTuple


class Projection(NamedTuple):
    so_far: float
    projected: float
    limit: float | None
    crosses: bool      # under the limit now, over it by month end: warn before it happens


def project(*, so_far: float, days_elapsed: float, days_in_month: int, forecast_month: float,
            limit: float | None) -> Projection:
    """Projected month total = so far + forecast × (days left / days in month); never below so far."""
    left = max(days_in_month - days_elapsed, 0.0) / days_in_month
    projected = so_far + max(forecast_month, 0.0) * left
    crosses = limit is not None and so_far <= limit < projected
    return Projection(so_far, projected, limit, crosses)
