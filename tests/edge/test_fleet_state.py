"""The fleet's persisted sequence state (lives and seqs), without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from apt_energy.edge.fleet import Register, SavedDevice, load_state

pytestmark = pytest.mark.unit


def write(path: Path, devices: dict[str, tuple[int, dict[str, list[int]]]]) -> None:
    path.write_text(json.dumps({"format": 2,   # the layout before positions (format 3)
                                "devices": {d: {"life": life, "meters": m} for d, (life, m) in devices.items()}}))


def test_no_state_file_means_no_saved_device(tmp_path: Path) -> None:
    assert load_state(tmp_path / "state.json") == {}


def test_old_state_files_are_life_0(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"hanbit-01-101": {"water": [12, 345]}}))
    assert load_state(tmp_path / "state.json") == {"hanbit-01-101": SavedDevice(0, {"water": Register(12, 345)})}


def test_shard_files_merge_to_the_latest_life_and_its_highest_seq(tmp_path: Path) -> None:
    write(tmp_path / "state-0-of-2.json", {"a": (5, {"water": [100, 1]}), "b": (7, {"water": [3, 1]})})
    write(tmp_path / "state-1-of-2.json", {"a": (9, {"water": [2, 2]}), "b": (7, {"water": [4, 2]})})
    (tmp_path / "state-0-of-1.json").write_text(json.dumps({"a": {"water": [500, 9]}}))   # from before lives
    merged = load_state(tmp_path / "state-0-of-2.json")
    assert merged["a"] == SavedDevice(9, {"water": Register(2, 2)})   # the old life's higher seq is not taken
    assert merged["b"] == SavedDevice(7, {"water": Register(4, 2)})
