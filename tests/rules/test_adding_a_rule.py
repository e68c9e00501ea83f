"""Adding a rule is one new module (plus its test), its section in complex.yaml and its texts in
messages.yaml: this test writes such a module into a package of its own, registers it, and shows that the
settings loader, the sink's evaluation, the notifier's words, the report and the dashboards pick it up
with no other edit — and that a bad parameter or a missing text fails at load, naming the key."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
import textwrap
from collections.abc import Iterator, Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from apt_energy.alerts.message import MessageStyle, render
from apt_energy.alerts.outbox import Notice
from apt_energy.app.report import rule_rows
from apt_energy.config.settings import DEFAULT_CONFIG_DIR
from apt_energy.core.errors import ConfigError
from apt_energy.dashboards.definitions import alert_unit, rules_described
from apt_energy.rules import Batch, MonthChange, registry
from apt_energy.spark.evaluation import decide

from apt_energy import config

pytestmark = pytest.mark.unit

# The whole new rule: parameters (checked at load), its SQL, its pure evaluation, its texts, its description.
STANDBY = '''
"""``standby``: a household-month using almost nothing per day measured (a vacant flat, or a stuck meter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

from apt_energy.rules.base import Alert, Batch, Outcome, Rule, require


@dataclass(frozen=True)
class StandbyRule:
    max_per_day: float
    min_days: int = 7

    def __post_init__(self) -> None:
        require(self.max_per_day > 0, "max_per_day", "a number > 0", self.max_per_day)


class Covered(NamedTuple):
    household_id: int
    meter: str
    month: date
    amount: float
    days: float


COVERED = "SELECT household_id, meter, month, amount, days FROM standby_input(%s, %s, %s)"


def evaluate(batch: Batch, rule: StandbyRule) -> Outcome:
    keys = [c for c in batch.changes if c.covered_s >= rule.min_days * 86400]
    if not keys:
        return Outcome([])
    rows = batch.db.rows(COVERED, ([c.household_id for c in keys], [c.energy_type for c in keys],
                                   [c.month for c in keys]), Covered)
    return Outcome([Alert(r.household_id, r.meter, r.month, "standby", "warning", r.amount / r.days,
                          rule.max_per_day) for r in rows if r.amount / r.days < rule.max_per_day])


RULE = Rule(key="standby", description="a month using almost nothing per day (vacant, or a stuck meter)",
            params=StandbyRule, evaluate=evaluate, names=("standby",), order=50, observed_unit="per day")
'''

YAML = """
  standby:                   # a month using almost nothing per day measured
    max_per_day: 0.5
"""
TEXTS = {"ko": '    standby: "{building}동 {unit}호의 {period} {energy} 사용량이 거의 없습니다: 하루 {observed}"\n',
         "en": '    standby: "Almost no use: building {building}, unit {unit}, {energy} in {period}: '
               '{observed} a day"\n'}


@pytest.fixture
def standby(tmp_path: Path) -> Iterator[ModuleType]:
    """The new rule module, in a package of its own, registered beside the project's rules."""
    package = tmp_path / "more_rules"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "standby.py").write_text(textwrap.dedent(STANDBY), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("more_rules.standby")
        before = registry.install(registry.discover().with_rules(*registry.rules_of([module])))
        yield module
    finally:
        registry.install(before)
        sys.path.remove(str(tmp_path))
        for name in ("more_rules.standby", "more_rules"):
            sys.modules.pop(name, None)


def config_dir(tmp_path: Path, *, rule: str = YAML, texts: dict[str, str] = TEXTS) -> Path:
    """complex.yaml with the rule's section, messages.yaml with its texts: the two YAML edits of the task."""
    directory = tmp_path / "config"
    directory.mkdir(exist_ok=True)
    for name in ("complex.yaml", "pipeline.yaml", "messages.yaml", "tariffs.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, directory / name)
    complex_yaml = directory / "complex.yaml"
    complex_yaml.write_text(complex_yaml.read_text(encoding="utf-8").replace("\nrules:\n", "\nrules:" + rule, 1),
                            encoding="utf-8")
    messages = directory / "messages.yaml"
    text = messages.read_text(encoding="utf-8")
    for language, line in texts.items():
        text = text.replace(f"\n  {language}:\n", f"\n  {language}:\n{line}", 1)
    messages.write_text(text, encoding="utf-8")
    return directory


class Rows:
    """The rules' reads, answered from a table per SQL text (what the sink's connection would return)."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]]) -> None:
        self.answers, self.asked = answers, []

    def rows(self, sql: str, args: Sequence[object], row: type[Any]) -> list[Any]:
        self.asked.append(sql)
        return [row(*r) for r in self.answers.get(sql, [])]


def test_a_new_rule_module_is_typed_evaluated_worded_reported_and_shown(standby: ModuleType, tmp_path: Path) -> None:
    settings = config.load(config_dir(tmp_path), environ={}, dotenv=None)
    assert settings.rules.standby == standby.StandbyRule(max_per_day=0.5)
    assert settings.rules.thresholds["electricity"].warning == 500        # the other rules as before

    # the sink's evaluation path: every registered rule over the batch, the new one with its own SQL
    month = date(2024, 3, 1)
    change = MonthChange(7, "electricity", month, Decimal("1"), Decimal("2"), 10 * 86400, 3, 1)
    db = Rows({standby.COVERED: [(7, "electricity", month, 2.0, 10.0)]})
    outcome = decide(Batch([change], "Asia/Seoul", db), registry.current(), settings.rules)
    [alert] = outcome.raise_alerts
    assert (alert.rule, alert.household_id, alert.observed, alert.reference) == ("standby", 7, 0.2, 0.5)
    assert db.asked == [standby.COVERED]

    # its words, with its own unit in the blocks
    notice = Notice(id=1, kind="raised", alert_id=1, rule="standby", severity="warning", energy_type="electricity",
                    period=month, observed=0.2, reference=0.5, unit="kWh", building=3, floor=12, unit_no=1)
    en = MessageStyle.from_settings(dataclasses.replace(settings, slack=dataclasses.replace(settings.slack,
                                                                                            language="en")))
    message = render(notice, en)
    assert message.text == "Almost no use: building 3, unit 1201, Electricity in 2024-03: 0.200 a day"
    assert "0.200 / 0.500 per day" in str(message.blocks)

    # the report lists it (it raised nothing yet), the dashboards describe it and show its unit
    assert ("standby", "-", 0, "(none: a month using almost nothing per day (vacant, or a stuck meter))") in \
        rule_rows([], 0, registry.current())
    assert "standby: a month using almost nothing per day" in rules_described()
    assert "WHEN 'standby' THEN 'per day'" in alert_unit()


def test_a_bad_parameter_of_the_new_rule_fails_at_load_naming_its_key(standby: ModuleType, tmp_path: Path) -> None:
    bad = config_dir(tmp_path, rule=YAML.replace("0.5", "-1"))
    with pytest.raises(ConfigError, match=r"complex.yaml: rules.standby.max_per_day: expected a number > 0, got -1"):
        config.load(bad, environ={}, dotenv=None)
    missing = config_dir(tmp_path, rule="\n")
    with pytest.raises(ConfigError, match=r"rules.standby: expected a mapping \(required\)"):
        config.load(missing, environ={}, dotenv=None)


def test_a_missing_text_of_the_new_rule_fails_at_load_not_at_send(standby: ModuleType, tmp_path: Path) -> None:
    no_english = config_dir(tmp_path, texts={"ko": TEXTS["ko"]})
    with pytest.raises(ConfigError, match=r"messages.yaml: messages.en.standby: expected a message text "
                                          r"\(the standby rule needs it\), got None$"):
        config.load(no_english, environ={}, dotenv=None)


def test_the_project_rules_fail_at_load_on_a_missing_text(tmp_path: Path) -> None:
    directory = config_dir(tmp_path, rule="\n", texts={})
    messages = directory / "messages.yaml"
    text = messages.read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("    projection_bill:") and "KRW" in x)
    messages.write_text(text.replace(line + "\n", ""), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"messages.en.projection_bill: expected a message text \(the projection"):
        config.load(directory, environ={}, dotenv=None)
