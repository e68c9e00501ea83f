"""Register continuity: does a meter's register (``total``) step by each interval's value?

Within one (device, meter, life) a reading is compared with its neighbour in time (the reading ending
at or before its start). The comparison is pairwise, so it does not depend on the order readings
arrive in: the merge (``spark/sink.py``) checks each new reading against its stored or same-batch
predecessor and, for readings arriving late, against its stored successor. Exactness is the 6-decimal
NUMERIC of the contract, so equal means equal.

The SQL in the sink implements :func:`judge_step`; this is its specification, tested as a pure function.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Literal

logger = logging.getLogger(__name__)

__all__ = ["BreakKind", "judge_step"]

BreakKind = Literal["backwards", "step", "gap"]


def judge_step(prev_total: Decimal, total: Decimal, value: Decimal, *, missing_s: int) -> BreakKind | None:
    """What the step from the earlier reading's register (``prev_total``) to this one's (``total``) says,
    ``missing_s`` seconds between the earlier interval's end and this one's start.

    * ``backwards``: the register went down (a reset or a swapped meter without a new life);
    * ``step``: adjacent intervals and the register did not move by exactly ``value``, or across missing
      intervals it moved by less than ``value`` (it cannot hold this interval's consumption);
    * ``gap``: intervals are missing in between and the register moved by more than ``value``: the rest
      is the missing intervals' consumption. Not an error (completeness shows the missing time);
    * ``None``: continuous.
    """
    step = total - prev_total
    if step < 0:
        return "backwards"
    if missing_s == 0:
        return None if step == value else "step"
    if step < value:
        return "step"
    return "gap"
