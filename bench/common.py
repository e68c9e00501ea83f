"""Shared by the benchmarks: the native stack, a results line, percentiles."""

from __future__ import annotations

import json
import time
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.stack import NativeStack
from apt_energy.stack.secrets import ensure_dotenv

from apt_energy import config

RESULTS = Path(__file__).resolve().parent / "results"


def stack_settings() -> Settings:
    ensure_dotenv()
    settings = config.load()
    NativeStack(settings).up()
    return settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def report(name: str, figures: dict[str, float | str]) -> None:
    """Print the figures and keep them (git-ignored) for comparing runs."""
    print(f"\n== {name}")
    for key, value in figures.items():
        print(f"  {key:<44} {value:,.3f}" if isinstance(value, float) else f"  {key:<44} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"at": time.time(), **figures}, indent=1))
