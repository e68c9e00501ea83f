"""Terminal tables line up on screen with Hangul labels (two columns per syllable)."""

from __future__ import annotations

import pytest
from apt_energy.core.table import pad, table, width

pytestmark = pytest.mark.unit


def test_hangul_takes_two_columns_and_combining_marks_none() -> None:
    assert width("전력") == 4
    assert width("84㎡ (34평형)") == 13   # 10 characters, ㎡ and two syllables wide
    assert width("e\u0301") == 1
    assert width("m³ kWh") == 6


def test_pad_fills_to_display_columns_in_each_alignment() -> None:
    assert pad("전력", 6) == "전력  "
    assert pad("전력", 6, ">") == "  전력"
    assert pad("수도", 7, "^") == " 수도  "
    assert pad("기본요금 (누진 3단계)", 4) == "기본요금 (누진 3단계)"


def test_table_columns_start_at_the_same_screen_column_with_mixed_scripts() -> None:
    lines = table([("기본요금 (누진 3단계)", "7,300"), ("climate", "9,000"), ("전력량요금 1단계", "24,000")],
                  headers=("label", "amount"), align="<>")
    ends = {width(line) for line in lines}
    assert len(ends) == 1, lines           # every right-aligned amount ends in the same column
    assert lines[0].startswith("label ")
    assert lines[2].endswith(" 9,000")
