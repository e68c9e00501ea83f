"""The bench report: one table of every figure, one JSON line per run, skipped and failed modules noted."""

from __future__ import annotations

import json
import math
import types
from pathlib import Path

import pytest

from bench.figure import Figure
from bench.report import Outcome, append, collect, record, table

pytestmark = pytest.mark.unit

RATE = Figure("fleet publish rate", 12_000.0, "msg/s", "mosquitto_pub", 10_000.0, goal=1.0)
LATENCY = Figure("p99 added latency", 60.0, "ms", "none", math.nan, target=50.0, higher_is_better=False)


def test_table_has_one_row_per_figure_with_ratio_goal_and_met() -> None:
    lines = table([Outcome("edge", (RATE,)), Outcome("bridge", (LATENCY,))]).splitlines()
    assert lines[0].split()[:2] == ["figure", "value"]
    assert len(lines) == 4
    assert "12,000" in lines[2] and "1.20×" in lines[2] and "≥ 1×" in lines[2] and lines[2].endswith("yes")
    assert "≤ 50.0 ms" in lines[3] and lines[3].endswith("NO") and "—" in lines[3]


def test_a_module_without_figures_is_skipped_with_a_note_and_a_failing_one_is_reported() -> None:
    def importer(name: str) -> types.SimpleNamespace:
        if name.endswith("old"):
            return types.SimpleNamespace()
        return types.SimpleNamespace(figures=lambda: 1 / 0)

    skipped, failed = collect("old", importer), collect("broken", importer)
    assert skipped.note == "skipped: bench_old has no figures()" and not skipped.figures
    assert failed.note.startswith("failed: ZeroDivisionError")
    text = table([skipped, failed])
    assert "old: skipped" in text and "broken: failed" in text


def test_a_run_is_one_strict_json_line_appended(tmp_path: Path) -> None:
    run = record([Outcome("edge", (RATE, LATENCY)), Outcome("spark", note="skipped: x")], at=0.0,
                 commit="abc1234", load=[1.5, 1.0, 0.5])
    path = tmp_path / "runs.jsonl"
    append(run, path)
    append(run, path)
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    back = json.loads(lines[0])
    assert back["at"] == "1970-01-01T00:00:00Z" and back["commit"] == "abc1234"
    assert back["load_average"] == [1.5, 1.0, 0.5] and back["notes"] == {"spark": "skipped: x"}
    first, second = back["figures"]
    assert first["module"] == "edge" and first["ratio"] == 1.2 and first["met"] is True
    assert second["baseline_value"] is None and second["ratio"] is None and second["met"] is False
