"""Energy types are data end to end: gas added with config entries only (the energy table with its
simulation model, and a tariff naming an existing kind) loads, bills, and shows in the statement, the
export header, the dashboards and the report; the contract takes its readings. A missing piece stops at
load with one line naming the key."""

from __future__ import annotations

import argparse
import filecmp
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest
import yaml
from apt_energy.app.report import usage_rows
from apt_energy.billing import export, statement
from apt_energy.billing.bill import bill_for
from apt_energy.billing.cli import export_options, statement_inputs, tariffs_for
from apt_energy.billing.statement_source import BillRow, LineRow, energy_parts
from apt_energy.config.settings import DEFAULT_CONFIG_DIR
from apt_energy.core.contract import Reading
from apt_energy.core.errors import ConfigError
from apt_energy.dashboards.build import render
from apt_energy.dashboards.cli import dashboard_inputs

from apt_energy import billing, config
from tests.billing import energy_type_files

pytestmark = pytest.mark.unit

CONFIG = ("complex.yaml", "pipeline.yaml", "messages.yaml", "tariffs.yaml")
MARCH = date(2025, 3, 1)


@pytest.fixture
def config_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in CONFIG:
        shutil.copy(DEFAULT_CONFIG_DIR / name, tmp_path / name)
    monkeypatch.setenv("APT_ENERGY_CONFIG_DIR", str(tmp_path))   # where the door reads tariffs.yaml
    return tmp_path


def edit_yaml(path: Path, change: object) -> None:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(raw)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")


def add_gas(directory: Path) -> None:
    """Gas as an operator adds it: an energy-table entry (+ its simulation model) and a tariff section
    naming an existing kind. Nothing else."""
    def energy(raw: dict) -> None:  # type: ignore[type-arg]
        raw["energy"]["gas"] = {"label_ko": "가스", "label_en": "Gas", "unit": "MJ", "decimals": 3,
                                "emission_factor": {"value": 0.0561, "unit": "kg CO2e/MJ", "source": "test figure"}}
        raw["simulation"]["meters"]["gas"] = {"base_per_month": 1500.0, "season": [1.0] * 12,
                                              "per_person": [1.0] * 5}

    def tariff(raw: dict) -> None:  # type: ignore[type-arg]
        raw["gas"] = {"kind": "flat",
                      "tariffs": [{"valid_from": date(2024, 7, 1), "base_krw": 1250, "energy_krw_per_unit": 22.2769,
                                   "source": "test figure"}],
                      "vat_rate": [{"valid_from": date(2000, 1, 1), "value": 0.10, "source": "test"}]}

    edit_yaml(directory / "complex.yaml", energy)
    edit_yaml(directory / "tariffs.yaml", tariff)


def test_adding_gas_takes_the_two_config_files_and_every_part_lists_it(config_copy: Path) -> None:
    add_gas(config_copy)
    changed = [n for n in CONFIG if not filecmp.cmp(config_copy / n, DEFAULT_CONFIG_DIR / n, shallow=False)]
    assert changed == list(energy_type_files.CONFIG_FILES)

    settings = config.load(config_copy, environ={}, dotenv=None)
    rates = tariffs_for(settings)
    # 1,250 + 2,000 MJ × 22.2769 = 44,553.8 → 44,553; VAT 4,580.3 → 4,580; 50,383 → 50,380
    bill = bill_for(rates, "gas", MARCH, D(2000))
    assert (bill.energy_type, bill.total) == ("gas", D(50380))
    # the shipped types keep their kinds (and their bills)
    assert rates.keys_of(billing.ProgressiveTariff) == ("electricity",)
    assert bill_for(rates, "water", MARCH, D("25.6")).total == D(23800)

    # the statement: a part per energy type of the table, gas with its bill, label and unit
    inputs = statement_inputs(settings)
    parts = energy_parts(inputs.energy, MARCH, bills={"gas": BillRow("gas", D(2000), None, bill.total)},
                         lines=[LineRow("gas", line.code, line.label, line.quantity, line.rate, line.amount)
                                for line in bill.lines], history={}, peers={}, projections={}, completeness={})
    assert [p.key for p in parts] == list(settings.energy) and "gas" in settings.energy
    st = statement.Statement("c", "c-01-101", 1, 101, "84", MARCH, (MARCH, date(2025, 3, 31)), parts, False)
    for lang, name in (("ko", "가스"), ("en", "Gas")):
        page = statement.render(st, lang)  # type: ignore[arg-type]
        assert 'data-energy="gas"' in page and f"{name} <span class=\"unit\">(MJ)</span>" in page
        assert '<b data-total="gas">50,380</b>' in page

    # the export names gas's unit in its header
    args = argparse.Namespace(start=MARCH, end=date(2025, 4, 1), household=None, energy="gas")
    assert "amount (MJ)" in export.header("usage", export_options(settings, args))

    # the dashboards: gas's usage, forecast and per-household panels
    boards = "".join(render(dashboard_inputs(settings)).values())
    assert "가스 Gas — monthly usage (MJ)" in boards and "가스 Gas — complex forecast vs actual (MJ)" in boards
    assert boards.count("누진 단계별 세대") == 1     # gas is not on the progressive kind: no tier panel

    # the report's usage table
    rows = usage_rows(settings.energy, [(1, "gas", D(1500), 84.15, 10)], {(1, "gas"): MARCH})
    assert rows[0][1:3] == ("가스 Gas", "1,500.0 MJ") and rows[-1][0] == "all"

    # the contract takes gas readings in gas's unit, and only in it
    units = {k: e.unit for k, e in settings.energy.items()}
    reading = Reading("c-01-101", "gas", 1, datetime(2025, 3, 1, tzinfo=UTC), 3600, 1.5, 1.5, "MJ")
    assert Reading.from_json(reading.to_json(), units=units) == reading
    with pytest.raises(Exception, match="unit"):
        Reading.from_json(Reading("c-01-101", "gas", 1, reading.ts, 3600, 1.5, 1.5, "kWh").to_json(), units=units)


@pytest.mark.parametrize(("change", "message"), [
    # an energy type without its tariff
    (lambda c, t: c["energy"].update(gas=GAS) or c["simulation"]["meters"].update(gas=GAS_MODEL),
     r"no tariff for energy type 'gas' \(energy\.gas\)"),
    # a tariff for an energy type the table does not have
    (lambda c, t: t.update(gas=GAS_TARIFF), r"gas: a tariff for an energy type not in the energy table"),
    # a tariff without a kind
    (lambda c, t: t["water"].pop("kind"), r"water\.kind: missing"),
    # an energy type without an emission factor, or a label
    (lambda c, t: c["energy"]["heating"].pop("emission_factor"), r"energy\.heating\.emission_factor: .*required"),
    (lambda c, t: c["energy"]["heating"].update(label_en=" "), r"energy\.heating\.label_en: expected a non-empty"),
    # a messages language the energy table has no labels in
    (lambda c, t: None, r"messages: expected languages the energy table has labels for \(ko, en\)"),
])
def test_a_missing_piece_stops_at_load_with_one_line_naming_the_key(config_copy: Path, change: object,
                                                                   message: str) -> None:
    complex_raw = yaml.safe_load((config_copy / "complex.yaml").read_text(encoding="utf-8"))
    tariffs_raw = yaml.safe_load((config_copy / "tariffs.yaml").read_text(encoding="utf-8"))
    change(complex_raw, tariffs_raw)  # type: ignore[operator]
    if "messages" in message:
        edit_yaml(config_copy / "messages.yaml", lambda m: m["messages"].update(ja=m["messages"]["en"]))
    (config_copy / "complex.yaml").write_text(yaml.safe_dump(complex_raw, allow_unicode=True), encoding="utf-8")
    (config_copy / "tariffs.yaml").write_text(yaml.safe_dump(tariffs_raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as err:
        config.load(config_copy, environ={}, dotenv=None)
    assert "\n" not in str(err.value)


def test_an_unknown_kind_or_a_kind_with_missing_rates_stops_at_the_door(config_copy: Path) -> None:
    edit_yaml(config_copy / "tariffs.yaml", lambda t: t["water"].update(kind="tabled"))
    settings = config.load(config_copy, environ={}, dotenv=None)   # config checks that a kind is named
    with pytest.raises(ConfigError, match=r"water\.kind: expected one of progressive, area_heating, "
                                          r"water_sewerage, flat, got 'tabled'"):
        tariffs_for(settings)
    edit_yaml(config_copy / "tariffs.yaml", lambda t: t["water"].update(kind="flat"))
    with pytest.raises(ConfigError, match=r"tariffs: missing or malformed key"):
        tariffs_for(settings)   # water's tables have no base_krw: flat cannot bill it


def test_the_file_counter_sees_a_branch_on_an_energy_name(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text('def f(e):\n    return 1 if e == "water" else "SELECT 1 WHERE k = \'heating\'"\n')
    assert energy_type_files.literal_names(tmp_path / "mod.py") == [(2, "heating"), (2, "water")]
    assert energy_type_files.code_files(tmp_path) == {"mod.py": [(2, "heating"), (2, "water")]}


GAS = {"label_ko": "가스", "label_en": "Gas", "unit": "MJ", "decimals": 3,
       "emission_factor": {"value": 0.0561, "unit": "kg CO2e/MJ", "source": "test figure"}}
GAS_MODEL = {"base_per_month": 1500.0, "season": [1.0] * 12, "per_person": [1.0] * 5}
GAS_TARIFF = {"kind": "flat", "tariffs": [{"valid_from": date(2024, 7, 1), "base_krw": 1250,
                                           "energy_krw_per_unit": 22.2769, "source": "test figure"}],
              "vat_rate": [{"valid_from": date(2000, 1, 1), "value": 0.10, "source": "test"}]}
