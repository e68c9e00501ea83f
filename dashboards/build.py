"""Write the dashboards' JSON into ``dashboards/json/`` (what Grafana's file provider loads).

The JSON is generated, and committed so that compose can mount it without running Python; a test fails
when it drifts from the generator (re-run ``apt-energy dashboards build`` after changing config).
"""

from __future__ import annotations

import json
from pathlib import Path

from apt_energy.dashboards.definitions import DashboardInputs, all_dashboards

JSON_DIR = Path(__file__).resolve().parent / "json"


def render(inputs: DashboardInputs) -> dict[str, str]:
    """File name → JSON text, for every dashboard."""
    return {f"{d.uid.removeprefix('apt-energy-')}.json":
            json.dumps(d.to_json(), ensure_ascii=False, indent=2) + "\n" for d in all_dashboards(inputs)}


def write(inputs: DashboardInputs, directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(inputs).items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written


def stale(inputs: DashboardInputs, directory: Path = JSON_DIR) -> list[str]:
    """Dashboard files that differ from what the generator makes now (or are missing, or extra)."""
    wanted = render(inputs)
    have = {p.name for p in directory.glob("*.json")}
    return sorted({n for n, t in wanted.items() if n not in have or (directory / n).read_text(encoding="utf-8") != t}
                  | (have - set(wanted)))
