"""The registry (rules/registry.py): which rules there are, in which order, and what it answers for them."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from apt_energy.billing import store
from apt_energy.rules import Outcome, Rule, night_flow, registry, threshold
from apt_energy.rules.projection import forecast_share

pytestmark = pytest.mark.unit


def test_the_project_rules_are_discovered_in_evaluation_order() -> None:
    rules = registry.discover()
    assert [r.key for r in rules] == ["thresholds", "peer", "night_flow", "projection"]
    assert all(r.description and r.names for r in rules)
    assert rules.of_alert("threshold_critical") is threshold.RULE
    assert rules.of_alert("nothing") is None


def test_the_night_flow_unit_is_its_rule_s_and_the_others_use_the_meter_s() -> None:
    rules = registry.discover()
    assert rules.unit_of("night_flow", "m³") == night_flow.UNIT == "h"
    assert rules.unit_of("threshold", "kWh") == "kWh"
    assert rules.unit_of("unknown", "kWh") == "kWh"


def test_the_rules_section_has_a_typed_field_per_rule_and_the_optional_ones_default() -> None:
    section = registry.discover().section
    fields = {f.name: f for f in dataclasses.fields(section)}
    assert list(fields) == ["thresholds", "peer", "night_flow", "projection"]
    assert fields["night_flow"].type is night_flow.NightFlowRule
    assert fields["projection"].default_factory is not dataclasses.MISSING   # type: ignore[misc]
    assert issubclass(section, registry.Rules)


def test_two_rules_cannot_share_a_key() -> None:
    twin = Rule(key="peer", description="again", params=dict, evaluate=lambda b, p: Outcome([]), names=("twin",))
    with pytest.raises(ValueError, match="two rules with one key"):
        registry.discover().with_rules(twin)


def test_missing_texts_name_the_language_and_the_key() -> None:
    rules = registry.discover()
    texts = {name: "x" for r in rules for name in r.texts}
    assert rules.missing_texts({"en": texts}) == []
    without_peer = {k: v for k, v in texts.items() if k != "peer"}
    assert rules.missing_texts({"en": without_peer}) == [("messages.en.peer", "peer")]


@pytest.mark.parametrize(("forecast", "elapsed", "days"), [(360.0, 20.0, 30), (410.7, 3.25, 31), (-5.0, 1, 30),
                                                          (123.456789, 28.999, 29)])
def test_billing_projects_with_the_rule_s_formula(forecast: float, elapsed: float, days: int) -> None:
    # billing/store.py rounds the same share to 6 places for its Decimal projected bill
    share = forecast_share(forecast, days_elapsed=elapsed, days_in_month=days)
    assert share == max(forecast, 0.0) * (days - elapsed) / days
    assert store.forecast_share is forecast_share
    assert Decimal(str(round(share, 6))) >= 0


def test_the_settings_with_their_rules_section_still_pickle() -> None:
    # the section's class is made at run time; settings and options travel to subprocesses pickled
    import pickle

    from apt_energy import config

    settings = config.load(environ={})
    again = pickle.loads(pickle.dumps(settings))
    assert again.rules == settings.rules and again.rules.night_flow.min_hours == settings.rules.night_flow.min_hours
