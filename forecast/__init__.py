"""Usage forecasts: imported history, seasonal models, rolling-origin backtests, the Spark job."""

from __future__ import annotations

from apt_energy.forecast.history import import_months

__all__ = ["import_months"]
