"""Usage forecasts: imported history, seasonal models (per series and pooled across households),
rolling-origin backtests against the simulator's limit, the Spark job."""

from __future__ import annotations

from apt_energy.forecast.history import import_months

__all__ = ["import_months"]
