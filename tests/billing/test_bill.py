"""Bills against statements computed by hand from config/tariffs.yaml (see each test's arithmetic)."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal as D

import pytest
from apt_energy.billing.area_heating import area_heating_bill as heating_bill
from apt_energy.billing.progressive import next_tier_limit
from apt_energy.billing.progressive import progressive_bill as electricity_bill
from apt_energy.billing.rates import Dated
from apt_energy.billing.water_sewerage import water_sewerage_bill as water_bill

from apt_energy import billing

pytestmark = pytest.mark.unit

TARIFFS = billing.load()
EL = TARIFFS["electricity"]
MARCH = date(2025, 3, 1)   # climate 9.0, fuel 5.0, VAT 10 %, levy 3.2 %


def test_200_kwh_stays_in_tier_1_and_the_total_is_cut_below_10_won() -> None:
    # 910 + 200×120 + 200×9 + 200×5 = 27,710; VAT 2,771; levy 886.72 → 880; 31,361 → 31,360
    bill = electricity_bill(EL, MARCH, D("200.9"))
    assert (bill.billed, bill.tier, bill.total) == (D(200), 1, D(31360))
    assert {line.code: line.amount for line in bill.lines}["truncation"] == D(-1)


def test_201_kwh_enters_tier_2_with_its_base_charge() -> None:
    # 1,600 + 24,000 + 214 + 1,809 + 1,005 = 28,628; VAT 2,863; levy 916.1 → 910; 32,401 → 32,400
    bill = electricity_bill(EL, MARCH, D("201"))
    assert (bill.tier, bill.total) == (2, D(32400))


def test_400_kwh_is_the_top_of_tier_2() -> None:
    # 1,600 + 24,000 + 42,920 + 3,600 + 2,000 = 74,120; VAT 7,412; levy 2,371.84 → 2,370; 83,902 → 83,900
    bill = electricity_bill(EL, MARCH, D("400"))
    assert (bill.tier, bill.total) == (2, D(83900))


def test_401_kwh_enters_tier_3() -> None:
    # 7,300 + 24,000 + 42,920 + 307 + 3,609 + 2,005 = 80,141; VAT 8,014; levy 2,564.5 → 2,560; 90,715 → 90,710
    bill = electricity_bill(EL, MARCH, D("401"))
    assert (bill.tier, bill.total) == (3, D(90710))


def test_summer_bands_keep_401_kwh_in_tier_2_in_august() -> None:
    # Aug 2025 bands 300/450, levy 2.7 %: 1,600 + 36,000 + 101×214.6 → 21,674 + 3,609 + 2,005 = 64,888;
    # VAT 6,489; levy 1,751.98 → 1,750; 73,127 → 73,120
    bill = electricity_bill(EL, date(2025, 8, 1), D("401"))
    assert (bill.tier, bill.total) == (2, D(73120))
    assert electricity_bill(EL, date(2025, 8, 1), D("450")).tier == 2
    assert electricity_bill(EL, date(2025, 8, 1), D("451")).tier == 3


def test_fund_levy_follows_its_dated_rates() -> None:
    june, july = electricity_bill(EL, date(2024, 6, 1), D(300)), electricity_bill(EL, date(2024, 7, 1), D(300))
    assert {line.code: line.rate for line in june.lines}["fund_levy"] == D("0.037")
    assert {line.code: line.rate for line in july.lines}["fund_levy"] == D("0.032")


def test_a_month_spanning_a_rate_change_pays_the_day_weighted_rate() -> None:
    # climate 9.0 for Mar 1-15, 12.1 from Mar 16: (15×9.0 + 16×12.1) / 31 = 10.6 → 100 kWh pay 1,060
    climate = Dated((*EL.climate.entries, (date(2025, 3, 16), D("12.1"), "test")))
    bill = electricity_bill(dataclasses.replace(EL, climate=climate), MARCH, D(100))
    line = {line.code: line for line in bill.lines}["climate"]
    assert (line.rate, line.amount) == (D("10.6"), D(1060))


def test_next_tier_limit_is_the_band_top_of_the_current_tier() -> None:
    assert next_tier_limit(EL, MARCH, D(150)) == 200
    assert next_tier_limit(EL, date(2025, 7, 1), D(350)) == 450
    assert next_tier_limit(EL, MARCH, D(401)) is None


def test_heating_bill_charges_contract_area_and_mcal_plus_vat() -> None:
    # 112 m² × 52.40 = 5,868.8 → 5,868; 1,000 × 101.57 = 101,570; VAT 10,743.8 → 10,744; 118,182 → 118,180
    assert heating_bill(TARIFFS["heating"], date(2025, 1, 1), D(1000)).total == D(118180)


def test_water_bill_charges_water_sewerage_tiers_and_levy_on_whole_m3() -> None:
    # 25 m³: 8,200 + 3,050 + 6,000 + 2,300 + 4,250 = 23,800
    assert water_bill(TARIFFS["water"], MARCH, D("25.6")).total == D(23800)
    # 31 m³: 8,200 + 6,100 + 890 + 6,000 + 4,600 + 700 + 5,270 = 31,760
    assert water_bill(TARIFFS["water"], MARCH, D("31.2")).total == D(31760)


def test_lines_add_up_to_the_total() -> None:
    for energy, usage in (("electricity", D("523.4")), ("heating", D("777.7")), ("water", D("18.3"))):
        bill = billing.bill_for(TARIFFS, energy, MARCH, usage)  # type: ignore[arg-type]
        summed = sum(line.amount for line in bill.lines if line.code != "charge")
        assert summed == bill.total
