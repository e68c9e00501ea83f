"""Finding poison records by bisection, with a stand-in probe (no database)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest
from apt_energy.spark.poison import find_poison, is_data_error, printable, rejection

pytestmark = pytest.mark.unit


class Refusing:
    """A probe refusing any subset holding a poison item; counts its calls."""

    def __init__(self, poison: set[int], *, together: tuple[int, int] | None = None) -> None:
        self.poison = poison
        self.together = together
        self.calls = 0

    def __call__(self, subset: Sequence[int]) -> str | None:
        self.calls += 1
        hit = [i for i in subset if i in self.poison]
        if hit:
            return f"refused {hit[0]}"
        if self.together and set(self.together) <= set(subset):
            return "refused together"
        return None


def test_clean_batches_cost_one_probe() -> None:
    probe = Refusing(set())
    assert find_poison(list(range(1000)), probe) == {}
    assert probe.calls == 1


@pytest.mark.parametrize("poison", [{0}, {999}, {3, 4, 5}, {0, 500, 999}, set(range(0, 1000, 97))])
def test_bisection_finds_exactly_the_poison_with_its_reason(poison: set[int]) -> None:
    items = list(range(1000))
    probe = Refusing(poison)
    found = find_poison(items, probe)
    assert found == {i: f"refused {i}" for i in poison}
    assert probe.calls <= 2 + 2 * len(poison) * 11   # O(k log n), not n


def test_records_refused_only_together_lose_the_later_one() -> None:
    items = list(range(16))
    assert find_poison(items, Refusing(set(), together=(3, 12))) == {12: "refused together"}
    assert find_poison(items, Refusing({7}, together=(2, 3))) == {7: "refused 7", 3: "refused together"}


def test_data_and_integrity_errors_are_data_errors_others_are_not() -> None:
    assert is_data_error(psycopg.errors.StringDataRightTruncation("value too long"))
    assert is_data_error(psycopg.errors.NotNullViolation("null value"))
    assert is_data_error(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert not is_data_error(psycopg.errors.SerializationFailure("could not serialize"))
    assert not is_data_error(psycopg.errors.DeadlockDetected("deadlock"))
    assert not is_data_error(psycopg.OperationalError("connection lost"))
    assert rejection(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes\nmore")) == \
        "database: PostgreSQL text fields cannot contain NUL (0x00) bytes"


def test_printable_replaces_nul_only() -> None:
    assert printable("a\x00b\tc") == "a\ufffdb\tc"
    assert printable(None) is None


def test_staged_columns_follow_the_staged_reading_fields() -> None:
    from apt_energy.spark.sink import StagedReading
    from apt_energy.spark.staging import STAGED_COLUMNS

    rename = {"partition": "kafka_partition", "offset": "kafka_offset"}
    assert STAGED_COLUMNS[2:] == tuple(rename.get(f, f) for f in StagedReading._fields)
