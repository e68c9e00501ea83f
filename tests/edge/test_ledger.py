"""The ledger's sums are the exact decimals the readings wrote, and survive a write and a load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apt_energy.core.contract import Reading, exact
from apt_energy.edge.ledger import Ledger
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_contract_properties import amounts

pytestmark = pytest.mark.unit

SEOUL = ZoneInfo("Asia/Seoul")
START = datetime(2024, 1, 1, tzinfo=UTC)


@settings(max_examples=200, deadline=None)
@given(st.lists(amounts, min_size=1, max_size=40))
def test_a_total_is_the_exact_sum_of_the_decimals_the_readings_wrote(values: list[float]) -> None:
    ledger = Ledger(SEOUL)
    for seq, value in enumerate(values):
        ledger.record(Reading("hanbit-01-101", "water", seq, START + timedelta(hours=1), 3600, value, value, "m³"))
    (entry,) = ledger.entries.values()
    assert entry.total == sum((exact(v) for v in values), Decimal(0))
    assert (entry.count, entry.first_seq, entry.last_seq) == (len(values), 0, len(values) - 1)


def test_a_written_ledger_loads_back_to_the_same_totals(tmp_path: Path) -> None:
    ledger = Ledger(SEOUL)
    for seq, value in enumerate([0.000001, 999999999.999999, 12.5, 0.1, 0.2]):
        ledger.record(Reading("hanbit-01-101", "water", seq, START + timedelta(hours=seq + 1), 3600, value, value,
                              "m³"))
    ledger.write(tmp_path / "ledger.json")
    again = Ledger(SEOUL)
    again.load(tmp_path / "ledger.json")
    assert {k: (e.total, e.count) for k, e in again.entries.items()} == {
        k: (e.total, e.count) for k, e in ledger.entries.items()}
    assert Ledger.read(tmp_path / "ledger.json")[("hanbit-01-101", "water", "2024-01-01")] == (
        Decimal("1000000012.8"), 5)
