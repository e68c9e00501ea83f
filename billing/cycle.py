"""Billing months cut at the complex's meter-reading day (검침일), in its time zone.

A billing month named ``M`` (its first day, as ``bills.usage_month``) runs from ``reading_day`` of M,
00:00 local time, to ``reading_day`` of the next month; ``reading_day = 1`` is the calendar month. The
tariff of the month it is named by applies (KEPCO prorates a cycle across 7/1 and 9/1 by days; not
modelled).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

logger = logging.getLogger(__name__)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def cycle_start(month: date, reading_day: int, tz: ZoneInfo) -> datetime:
    """When the billing month named ``month`` starts (aware, in ``tz``)."""
    return datetime(month.year, month.month, reading_day, tzinfo=tz)


def cycle_end(month: date, reading_day: int, tz: ZoneInfo) -> datetime:
    """When the billing month named ``month`` ends (exclusive): the next month's reading day."""
    return cycle_start(next_month(month), reading_day, tz)


def cycle_days(month: date, reading_day: int) -> int:
    """Days in the billing month named ``month``."""
    return (date(next_month(month).year, next_month(month).month, reading_day)
            - date(month.year, month.month, reading_day)).days


def cycle_of(ts: datetime, reading_day: int, tz: ZoneInfo) -> date:
    """The billing month a reading whose interval ends at ``ts`` belongs to: that of the interval's last
    instant (a reading ending at the reading day's midnight is the cycle before's, as in
    :func:`apt_energy.core.contract.usage_month`)."""
    local = (ts - timedelta(seconds=1)).astimezone(tz)
    shifted = (local - timedelta(days=reading_day - 1)).date()
    return shifted.replace(day=1)
