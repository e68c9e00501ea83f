"""The truth check's arithmetic: readings lost, doubled, totals that differ, keys the ledger lacks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from apt_energy.app.truth import Total, TruthResult

pytestmark = pytest.mark.unit

A = ("hanbit-01-101", "electricity", "2024-03-01")
B = ("hanbit-01-101", "water", "2024-03-01")
C = ("hanbit-01-102", "water", "2024-03-01")


def test_an_exact_copy_of_the_ledger_holds() -> None:
    ledger = {A: Total(Decimal("1.5"), 3), B: Total(Decimal("0.2"), 2)}
    truth = TruthResult(ledger, dict(ledger))
    assert truth.ok and (truth.lost, truth.doubled, truth.readings, truth.stored) == (0, 0, 5, 5)


def test_short_totals_count_as_lost_and_extra_ones_as_doubled() -> None:
    ledger = {A: Total(Decimal("1.5"), 3), B: Total(Decimal("0.2"), 2)}
    database = {A: Total(Decimal("1.0"), 2), C: Total(Decimal("0.1"), 1)}   # B missing, C unknown
    truth = TruthResult(ledger, database)
    assert not truth.ok
    assert (truth.lost, truth.doubled) == (1 + 2, 1)
    assert truth.differ == {A: (ledger[A], database[A]), B: (ledger[B], None)}
    assert truth.unknown == {C: database[C]}


def test_a_total_with_the_right_count_but_the_wrong_amount_fails_without_loss() -> None:
    truth = TruthResult({A: Total(Decimal("1.5"), 3)}, {A: Total(Decimal("1.4"), 3)})
    assert not truth.ok and (truth.lost, truth.doubled) == (0, 0)
