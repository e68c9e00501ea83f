"""``make bench``: every bench module's figures in one table, and the run appended to bench/results/runs.jsonl.

Each module ``bench.bench_<name>`` exposes ``figures() -> list[Figure]`` (value against a baseline measured
in the same run). A module without ``figures()`` is skipped with a one-line note; one that fails is
reported and the others still run (the exit status says something failed). One JSON line per run (time,
git commit, load average, figures) in a tracked file, so runs can be compared over time and diffs stay
one line each.

    .venv/bin/python -m bench.report                 # all
    .venv/bin/python -m bench.report --only edge     # one (repeatable)
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.figure import Figure

MODULES = ("edge", "bridge", "transforms", "spark", "e2e")
RESULTS = Path(__file__).resolve().parent / "results" / "runs.jsonl"
COLUMNS = ("figure", "value", "unit", "baseline", "baseline value", "ratio", "goal", "met")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One module's part of a run: its figures, or why it has none."""

    module: str
    figures: tuple[Figure, ...] = ()
    note: str = ""      # "skipped: …" or "failed: …"


def number(x: float | None) -> str:
    """Readable magnitude: 12,345 / 123.4 / 0.123; a dash for nothing or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


def goal_text(f: Figure) -> str:
    """The wanted ratio and/or the absolute target, in the direction that is better."""
    parts = []
    if f.goal is not None:
        parts.append(f"≥ {f.goal:g}×")
    if f.target is not None:
        parts.append(f"{'≥' if f.higher_is_better else '≤'} {number(f.target)} {f.unit}")
    return ", ".join(parts)


def rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for o in outcomes:
        if o.note:
            out.append((f"{o.module}: {o.note}", *[""] * (len(COLUMNS) - 1)))
        for f in o.figures:
            met = {True: "yes", False: "NO", None: ""}[f.met]
            ratio = "—" if math.isnan(f.ratio) else f"{f.ratio:.2f}×"
            out.append((f"{o.module}: {f.name}", number(f.value), f.unit, f.baseline, number(f.baseline_value),
                        ratio, goal_text(f), met))
    return out


def table(outcomes: Sequence[Outcome]) -> str:
    """One fixed-width table of every figure; notes of skipped or failed modules take a row of their own."""
    body = rows(outcomes)
    widths = [max(len(r[i]) for r in [COLUMNS, *body]) for i in range(len(COLUMNS))]
    right = {1, 4, 5}   # numbers line up on the right

    def line(r: Sequence[str]) -> str:
        cells = zip(r, widths, strict=True)
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(cells)).rstrip()

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *map(line, body)])


def _plain(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x   # strict JSON has no NaN


def record(outcomes: Sequence[Outcome], *, at: float, commit: str, load: Sequence[float]) -> dict[str, Any]:
    """The run as one JSON object: when, which commit, how busy the machine was, every figure with its ratio."""
    figures = [{"module": o.module, **{k: _plain(v) for k, v in dataclasses.asdict(f).items()},
                "ratio": _plain(f.ratio), "met": f.met} for o in outcomes for f in o.figures]
    notes = {o.module: o.note for o in outcomes if o.note}
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)), "commit": commit,
            "load_average": [round(x, 2) for x in load], "figures": figures, "notes": notes}


def append(run: dict[str, Any], path: Path = RESULTS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(run, ensure_ascii=False, allow_nan=False) + "\n")


def collect(module: str, importer: Callable[[str], Any] = importlib.import_module) -> Outcome:
    """Run one module's ``figures()``; a missing function or a failure becomes a note, not an abort."""
    try:
        mod = importer(f"bench.bench_{module}")
    except Exception as exc:  # a bench that cannot even import is reported like one that fails
        return Outcome(module, note=f"failed: cannot import ({type(exc).__name__}: {exc})")
    figures = getattr(mod, "figures", None)
    if not callable(figures):
        return Outcome(module, note=f"skipped: bench_{module} has no figures()")
    print(f"== {module}", flush=True)
    try:
        return Outcome(module, tuple(figures()))
    except Exception as exc:
        traceback.print_exc()
        return Outcome(module, note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).resolve().parent).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=MODULES, metavar="NAME",
                    help=f"run only this module (repeatable): {', '.join(MODULES)}")
    ap.add_argument("--no-save", action="store_true", help="print the table, do not append to bench/results")
    args = ap.parse_args(argv)
    began, commit = time.time(), git_commit()   # the code measured is the code at the start
    outcomes = [collect(m) for m in (args.only or MODULES)]
    print()
    print(table(outcomes))
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {time.time() - began:.0f} s")
    if not args.no_save:
        append(record(outcomes, at=began, commit=commit, load=os.getloadavg()))
        print(f"appended to {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}")
    return 1 if any(o.note.startswith("failed") for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
