"""The tariff rules beyond the common case: KEPCO's super-user band, the residential high-voltage table
(단일계약), billing months cut at the reading day, energy types that fail closed, months without a tariff.

Worked examples from KEPCO's published 주택용 tables (config/tariffs.yaml, in force since 2023-05-16), each
total worked by hand in the comment: base + tier kWh at their rates (each line cut below 1 won) + climate
9.0 + fuel 5.0 per kWh = charge; VAT 10 % rounded; fund levy cut below 10 won; total cut below 10 won.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from apt_energy.billing.bill import bill_for
from apt_energy.billing.cycle import cycle_days, cycle_end, cycle_of, cycle_start
from apt_energy.billing.progressive import progressive_bill as electricity_bill
from apt_energy.billing.store import has_tariff, month_ranges
from apt_energy.billing.tariffs import NoTariffInForce, load
from apt_energy.config.settings import DEFAULT_CONFIG_DIR
from apt_energy.core.errors import ConfigError
from hypothesis import given, settings
from hypothesis import strategies as st

from apt_energy import config

pytestmark = pytest.mark.unit

LOW = load()["electricity"]
HIGH = load(contract="single")["electricity"]
JAN_2025, AUG_2024, SEP_2024, AUG_2025, MAR_2025 = (date(2025, 1, 1), date(2024, 8, 1), date(2024, 9, 1),
                                                    date(2025, 8, 1), date(2025, 3, 1))


def lines(bill: object) -> dict[str, D]:
    return {line.code: line.amount for line in bill.lines}  # type: ignore[attr-defined]


@pytest.mark.parametrize(("month", "kwh", "tier", "total"), [
    # Aug 2025 (summer bands 300/450, levy 2.7 %):
    # 300: 910 + 36,000 + 2,700 + 1,500 = 41,110; VAT 4,111; levy 1,109.97 → 1,100; 46,321 → 46,320
    (AUG_2025, 300, 1, 46320),
    # 301: 1,600 + 36,000 + 214 + 2,709 + 1,505 = 42,028; VAT 4,203; levy 1,134.76 → 1,130; 47,361 → 47,360
    (AUG_2025, 301, 2, 47360),
    # 450: 1,600 + 36,000 + 32,190 + 4,050 + 2,250 = 76,090; VAT 7,609; levy 2,054.43 → 2,050; → 85,740
    (AUG_2025, 450, 2, 85740),
    # 451: 7,300 + 36,000 + 32,190 + 307 + 4,059 + 2,255 = 82,111; VAT 8,211; levy 2,217.0 → 2,210; → 92,530
    (AUG_2025, 451, 3, 92530),
    # 1,000 (the super-user line, not above it): 7,300 + 36,000 + 32,190 + 550 × 307.3 = 169,015 + 9,000
    # + 5,000 = 258,505; VAT 25,850.5 → 25,851; levy 6,979.6 → 6,970; 291,326 → 291,320
    (AUG_2025, 1000, 3, 291320),
    # 1,001: + 1 × 736.2 → 736 super-user, climate 9,009, fuel 5,005 = 259,255; VAT 25,926; levy 6,999.9
    # → 6,990; 292,171 → 292,170
    (AUG_2025, 1001, 3, 292170),
    # Jan 2025 (winter: bands 200/400, super-user months; levy 3.2 %):
    # 1,000: 7,300 + 24,000 + 42,920 + 600 × 307.3 = 184,380 + 9,000 + 5,000 = 272,600; VAT 27,260;
    # levy 8,723.2 → 8,720; 308,580
    (JAN_2025, 1000, 3, 308580),
    # 1,001: + 736 super-user, 9,009, 5,005 = 273,350; VAT 27,335; levy 8,747.2 → 8,740; 309,425 → 309,420
    (JAN_2025, 1001, 3, 309420),
    # The household, 1,050 kWh in Aug 2024 (levy 3.2 %): 7,300 + 36,000 + 32,190 + 550 × 307.3 =
    # 169,015 + 50 × 736.2 = 36,810 + 9,450 + 5,250 = 296,015; VAT 29,601.5 → 29,602; levy 9,472.5 → 9,470;
    # 335,087 → 335,080
    (AUG_2024, 1050, 3, 335080),
    # September is no super-user month: 650 kWh of tier 3: 7,300 + 24,000 + 42,920 + 199,745 + 9,450 +
    # 5,250 = 288,665; VAT 28,866.5 → 28,867; levy 9,237.3 → 9,230; 326,762 → 326,760
    (SEP_2024, 1050, 3, 326760),
])
def test_low_voltage_worked_examples_at_each_boundary(month: date, kwh: int, tier: int, total: int) -> None:
    bill = electricity_bill(LOW, month, D(kwh))
    assert (bill.tier, bill.total) == (tier, D(total))
    assert sum(a for code, a in lines(bill).items() if code != "charge") == bill.total


def test_super_user_band_bills_only_the_kwh_above_1000_at_its_rate() -> None:
    bill = {line.code: line for line in electricity_bill(LOW, AUG_2024, D("1050.7")).lines}
    assert (bill["energy_t3"].quantity, bill["energy_super"].quantity) == (D(550), D(50))
    assert (bill["energy_super"].rate, bill["energy_super"].amount) == (D("736.2"), D(36810))
    assert "energy_super" not in lines(electricity_bill(LOW, SEP_2024, D(1050)))
    assert "energy_super" not in lines(electricity_bill(LOW, AUG_2024, D(1000)))


@pytest.mark.parametrize(("month", "kwh", "tier", "total"), [
    # 200: 730 + 21,000 + 1,800 + 1,000 = 24,530; VAT 2,453; levy 784.96 → 780; 27,763 → 27,760
    (MAR_2025, 200, 1, 27760),
    # 401: 6,060 + 21,000 + 34,800 + 242 + 3,609 + 2,005 = 67,716; VAT 6,772; levy 2,166.9 → 2,160; → 76,640
    (MAR_2025, 401, 3, 76640),
    # 1,050 in Jan: 6,060 + 21,000 + 34,800 + 600 × 242.3 = 145,380 + 50 × 601.3 = 30,065 + 9,450 + 5,250
    # = 252,005; VAT 25,201; levy 8,064.2 → 8,060; 285,266 → 285,260
    (JAN_2025, 1050, 3, 285260),
])
def test_single_contract_bills_on_the_high_voltage_table(month: date, kwh: int, tier: int, total: int) -> None:
    bill = electricity_bill(HIGH, month, D(kwh))
    assert (bill.tier, bill.total) == (tier, D(total))


def test_contract_outside_comprehensive_or_single_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"billing\.contract"):
        load(contract="bulk")


@settings(max_examples=200, deadline=None)
@given(month=st.sampled_from([date(2024, m, 1) for m in range(1, 13)] + [date(2025, m, 1) for m in range(1, 13)]),
       a=st.decimals(min_value=0, max_value=3000, places=3),
       b=st.decimals(min_value=0, max_value=3000, places=3),
       single=st.booleans())
def test_electricity_bill_never_falls_as_usage_rises(month: date, a: D, b: D, single: bool) -> None:
    tariff = HIGH if single else LOW
    low, high = sorted((a, b))
    assert electricity_bill(tariff, month, low).total <= electricity_bill(tariff, month, high).total


@settings(max_examples=100, deadline=None)
@given(energy=st.sampled_from(["heating", "water"]), a=st.decimals(min_value=0, max_value=4000, places=3),
       b=st.decimals(min_value=0, max_value=4000, places=3))
def test_heating_and_water_bills_never_fall_as_usage_rises(energy: str, a: D, b: D) -> None:
    tariffs = load()
    low, high = sorted((a, b))
    assert bill_for(tariffs, energy, MAR_2025, low).total <= bill_for(tariffs, energy, MAR_2025, high).total


def test_a_month_before_the_first_tariff_is_reported_not_billed_with_another_rate() -> None:
    tariffs = load()
    with pytest.raises(NoTariffInForce):
        electricity_bill(tariffs["electricity"], date(2023, 4, 1), D(100))
    assert not has_tariff(tariffs, "electricity", date(2023, 4, 1))
    assert has_tariff(tariffs, "electricity", date(2023, 6, 1))
    months = [("electricity", date(2023, m, 1)) for m in (1, 2, 3, 4)] + [("heating", date(2023, 6, 1))]
    assert month_ranges(months) == ["electricity 2023-01..2023-04", "heating 2023-06"]


# ------------------------------------------------------------------------------ reading day


SEOUL = ZoneInfo("Asia/Seoul")


def test_a_billing_month_runs_from_the_reading_day_to_the_next_months() -> None:
    assert cycle_start(date(2024, 8, 1), 15, SEOUL) == datetime(2024, 8, 15, tzinfo=SEOUL)
    assert cycle_end(date(2024, 8, 1), 15, SEOUL) == datetime(2024, 9, 15, tzinfo=SEOUL)
    assert cycle_days(date(2024, 8, 1), 15) == 31 and cycle_days(date(2024, 2, 1), 15) == 29
    assert cycle_days(date(2024, 2, 1), 1) == 29
    # readings end at ts: one ending at 15 Sep 00:00 local (14 Sep 15:00 UTC) is still August's
    assert cycle_of(datetime(2024, 9, 14, 15, 0, tzinfo=UTC), 15, SEOUL) == date(2024, 8, 1)
    assert cycle_of(datetime(2024, 9, 14, 15, 0, 1, tzinfo=UTC), 15, SEOUL) == date(2024, 9, 1)
    assert cycle_of(datetime(2024, 1, 3, tzinfo=UTC), 15, SEOUL) == date(2023, 12, 1)
    assert cycle_of(datetime(2024, 1, 3, tzinfo=UTC), 1, SEOUL) == date(2024, 1, 1)


# --------------------------------------------------------------------- energy types fail closed


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    for name in ("complex.yaml", "pipeline.yaml", "messages.yaml", "tariffs.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, tmp_path / name)
    return tmp_path


def add_gas(directory: Path, *, tariff: bool = True) -> None:
    """City gas metered in MJ, with its simulation model and (if ``tariff``) a flat tariff section."""
    path = directory / "complex.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    raw["energy"]["gas"] = {"label_ko": "가스", "label_en": "Gas", "unit": "MJ", "decimals": 3,
                            "emission_factor": {"value": 0.0561, "unit": "kg CO2e/MJ", "source": "test figure"}}
    raw["simulation"]["meters"]["gas"] = {"base_per_month": 1500.0, "season": [1.0] * 12, "per_person": [1.0] * 5}
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    if tariff:
        tpath = directory / "tariffs.yaml"
        traw = yaml.safe_load(tpath.read_text(encoding="utf-8"))
        traw["gas"] = {"kind": "flat",
                       "tariffs": [{"valid_from": date(2024, 7, 1), "base_krw": 1250, "energy_krw_per_unit": 22.2769,
                                    "source": "test figure"}],
                       "vat_rate": [{"valid_from": date(2000, 1, 1), "value": 0.10, "source": "test"}]}
        tpath.write_text(yaml.safe_dump(traw, allow_unicode=True), encoding="utf-8")


def test_an_energy_type_without_a_tariff_stops_at_load_naming_the_section_to_add(config_copy: Path) -> None:
    add_gas(config_copy, tariff=False)
    with pytest.raises(ConfigError, match=r"no tariff for energy type 'gas'.*add a `gas:` section") as err:
        config.load(config_copy, environ={}, dotenv=None)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["unit", "emission_factor", "label_ko", "label_en"])
def test_an_energy_type_without_its_unit_factor_or_labels_stops_at_load(config_copy: Path, key: str) -> None:
    add_gas(config_copy)
    path = config_copy / "complex.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    del raw["energy"]["gas"][key]
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"energy\.gas\.{key}: .*required"):
        config.load(config_copy, environ={}, dotenv=None)


def test_billing_an_energy_type_with_no_tariff_never_falls_through_to_another() -> None:
    with pytest.raises(ConfigError, match="no tariff for energy type 'gas'"):
        bill_for(load(), "gas", MAR_2025, D(100))
    with pytest.raises(ConfigError, match="no tariff for energy type 'gas'"):
        load(energy_types=["electricity", "gas"])


def test_gas_with_its_tariff_loads_and_bills(config_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_gas(config_copy)
    monkeypatch.setenv("APT_ENERGY_CONFIG_DIR", str(config_copy))
    settings = config.load(config_copy, environ={}, dotenv=None)
    from apt_energy.billing.cli import tariffs_for as for_settings

    tariffs = for_settings(settings)
    # 1,250 + 2,000 MJ × 22.2769 = 44,553.8 → 44,553; VAT 4,580.3 → 4,580; 50,383 → 50,380
    bill = bill_for(tariffs, "gas", MAR_2025, D(2000))
    assert (bill.energy_type, bill.total) == ("gas", D(50380))
    with pytest.raises(NoTariffInForce):
        bill_for(tariffs, "gas", date(2024, 6, 1), D(2000))


def test_the_complexs_contract_picks_the_table_and_bad_billing_settings_stop_at_load(config_copy: Path) -> None:
    from apt_energy.billing.cli import tariffs_for as for_settings

    single = config.load(config_copy, environ={"APT_ENERGY_BILLING_CONTRACT": "single"}, dotenv=None)
    assert for_settings(single)["electricity"].tier_table(MAR_2025).base_krw == (D(730), D(1260), D(6060))
    assert for_settings(config.load(config_copy, environ={}, dotenv=None))["electricity"].tier_table(
        MAR_2025).base_krw == (D(910), D(1600), D(7300))
    with pytest.raises(ConfigError, match=r"billing\.contract: expected comprehensive or single"):
        config.load(config_copy, environ={"APT_ENERGY_BILLING_CONTRACT": "bulk"}, dotenv=None)
    with pytest.raises(ConfigError, match=r"billing\.reading_day: expected a day of the month 1-28"):
        config.load(config_copy, environ={"APT_ENERGY_BILLING_READING_DAY": "29"}, dotenv=None)
