"""The peer rule (rules/peer.py): far above the building's median, robustly."""

from __future__ import annotations

from datetime import date

import pytest

from apt_energy import config, rules

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})


def test_peer_rule_flags_only_far_outliers() -> None:
    rule = SETTINGS.rules.peer
    amounts = {i: 300.0 + (i % 7) * 5 for i in range(40)}
    assert rules.peer_outliers(amounts, "electricity", date(2024, 8, 1), rule) == []
    amounts[99] = 700.0
    [alert] = rules.peer_outliers(amounts, "electricity", date(2024, 8, 1), rule)
    assert (alert.household_id, alert.rule, alert.reference) == (99, "peer", 315.0)
    assert rules.peer_outliers({1: 10.0, 2: 100.0}, "water", date(2024, 8, 1), rule) == []  # too few peers
