"""``apt-energy bridge`` options: --part i/n (also from APT_ENERGY_BRIDGE_PART), refused with one line."""

from __future__ import annotations

import pytest
from apt_energy.app.cli import build_parser
from apt_energy.bridge import Part, part_client_id

pytestmark = pytest.mark.unit


def test_part_flag_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["bridge"]).part == Part(0, 1)
    assert build_parser().parse_args(["bridge", "--part", "1/3"]).part == Part(1, 3)
    monkeypatch.setenv("APT_ENERGY_BRIDGE_PART", "2/3")
    assert build_parser().parse_args(["bridge"]).part == Part(2, 3)


def test_a_bad_part_is_refused_naming_the_expected_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bridge", "--part", "3/3"])
    assert exc.value.code == 2
    assert "expected i/n with 0 ≤ i < n, got 3/3" in capsys.readouterr().err


def test_each_part_has_a_fixed_client_id_of_its_own() -> None:
    assert part_client_id("apt-bridge-1", Part(0, 1)) == "apt-bridge-1"
    ids = {part_client_id("apt-bridge-1", Part(i, 3)) for i in range(3)}
    assert ids == {"apt-bridge-1-0of3", "apt-bridge-1-1of3", "apt-bridge-1-2of3"}
