"""Dated rates and the checks every tariff kind reads its YAML with (one place for the number, date and
list forms, so each kind's parser only says which keys it has).

A rate is a list of ``(valid_from, value)`` entries; :func:`Dated.at` picks the one in force on a day,
and :func:`Dated.day_weighted` blends the rates over a month that spans a change (KEPCO prorates by days).
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from apt_energy.core.errors import ConfigError

logger = logging.getLogger(__name__)


class NoTariffInForce(ConfigError):
    """No rate of ``key`` is in force on ``day``: the tariff file starts later (a month to report, not to
    bill with some other rate)."""

    def __init__(self, message: str, *, key: str, day: date) -> None:
        super().__init__(message)
        self.key, self.day = key, day


@dataclass(frozen=True)
class Dated:
    """One rate over time: entries sorted by ``valid_from``."""

    entries: tuple[tuple[date, Decimal, str], ...]

    def at(self, day: date) -> Decimal:
        """The value in force on ``day``."""
        value = None
        for valid_from, v, _ in self.entries:
            if valid_from <= day:
                value = v
        if value is None:
            raise NoTariffInForce(f"tariffs: no rate in force on {day} (first valid_from {self.entries[0][0]})",
                                  key="rate", day=day)
        return value

    def day_weighted(self, month: date) -> Decimal:
        """Mean of the daily rates over the calendar month starting at ``month`` (exact Decimal)."""
        days = calendar.monthrange(month.year, month.month)[1]
        total = sum((self.at(month + timedelta(days=d)) for d in range(days)), Decimal(0))
        return total / days


class _Dated(Protocol):
    @property
    def valid_from(self) -> date: ...


_T = TypeVar("_T", bound=_Dated)


def in_force(tables: tuple[_T, ...], day: date, key: str) -> _T:
    """The last of ``tables`` (sorted by ``valid_from``) in force on ``day``."""
    found = [t for t in tables if t.valid_from <= day]
    if not found:
        raise NoTariffInForce(f"tariffs: {key}: none in force on {day}", key=key, day=day)
    return found[-1]


def dec(value: Any, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"tariffs: {key}: expected a number, got {value!r}")
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise ConfigError(f"tariffs: {key}: expected a number, got {value!r}") from None


def day(value: Any, key: str) -> date:
    if not isinstance(value, date):
        raise ConfigError(f"tariffs: {key}: expected a date YYYY-MM-DD, got {value!r}")
    return value


def triple(values: Any, key: str) -> tuple[Decimal, Decimal, Decimal]:
    if not isinstance(values, list) or len(values) != 3:
        raise ConfigError(f"tariffs: {key}: expected a list of 3 numbers (tiers 1-3), got {values!r}")
    a, b, c = (dec(v, key) for v in values)
    return a, b, c


def pair(values: Any, key: str) -> tuple[int, int]:
    if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, int) for v in values)
            and 0 < values[0] < values[1]):
        raise ConfigError(f"tariffs: {key}: expected two increasing whole band limits, got {values!r}")
    return values[0], values[1]


def dated(values: Any, key: str) -> Dated:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"tariffs: {key}: expected a list of {{valid_from, value, source}}")
    entries = []
    for i, e in enumerate(values):
        if not isinstance(e, dict) or not e.get("source"):
            raise ConfigError(f"tariffs: {key}[{i}]: expected {{valid_from, value, source}}, got {e!r}")
        entries.append((day(e.get("valid_from"), f"{key}[{i}].valid_from"), dec(e.get("value"), f"{key}[{i}].value"),
                        str(e["source"])))
    return Dated(tuple(sorted(entries)))


def months(values: Any, key: str) -> tuple[int, ...]:
    if not (isinstance(values, list) and values and all(isinstance(m, int) and 1 <= m <= 12 for m in values)):
        raise ConfigError(f"tariffs: {key}: expected a list of months 1-12, got {values!r}")
    return tuple(values)


def tables(raw: Mapping[str, Any], key: str) -> list[Any]:
    """A kind's ``tariffs:`` list of dated tables (at least one)."""
    found = raw.get("tariffs")
    if not isinstance(found, list) or not found:
        raise ConfigError(f"tariffs: {key}.tariffs: expected a list of dated tables")
    return found
