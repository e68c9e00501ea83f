"""The backtest scores the limit only when the stored history is this configuration's simulation."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from apt_energy.config import Settings
from apt_energy.database.connection import connect
from apt_energy.forecast.cli import simulated_history
from apt_energy.forecast.history import import_months

pytestmark = pytest.mark.integration


def _import(settings: Settings, source: str, month: date) -> None:
    h = settings.complex.households()[0]
    with connect(settings) as conn:
        import_months(conn, device_ids=[h.device_id], meters=["electricity", "heating", "water"], months=[month],
                      totals=np.array([[[250.0, 500.0, 15.0]]]), decimals=[3, 3, 4], source=source)


def test_the_limit_row_needs_history_simulated_with_the_configured_seed(fresh_db: Settings) -> None:
    assert not simulated_history(fresh_db)                       # nothing imported: no simulator to ask
    _import(fresh_db, f"simulated-history seed={fresh_db.simulation.seed}", date(2023, 1, 1))
    assert simulated_history(fresh_db)
    _import(fresh_db, "kepco-bills 2023", date(2023, 2, 1))      # a real import beside it: no limit
    assert not simulated_history(fresh_db)
