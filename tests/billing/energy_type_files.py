"""How many files adding an energy type touches: run ``python -m tests.billing.energy_type_files [ROOT]``.

Two counts, for the tree at ROOT (default: this checkout):
- ``code``: Python files outside tests/ holding a string literal that is an energy key of the shipped
  table (``"electricity"``, ``"heating"``, ``"water"``): each is a place that branches on, or defaults
  to, an energy name, so a new energy type may need it changed (or silently gets another type's way);
- ``config``: the config files a new energy type needs an entry in (test_energy_types.py adds gas with
  exactly these, and asserts so).

Run it on an older commit (``git archive <commit> | tar -x -C /tmp/old``) for the "before" figure.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = frozenset({"electricity", "heating", "water"})
CONFIG_FILES = ("complex.yaml", "tariffs.yaml")   # the energy table (+ its simulation model), the tariff


def literal_names(path: Path, names: Iterable[str] = SHIPPED) -> list[tuple[int, str]]:
    """(line, name) of each string constant in ``path`` that is one of ``names``, or quotes one as an SQL
    literal (``'electricity'`` in a query)."""
    wanted = set(names)
    quoted = re.compile("'(" + "|".join(sorted(wanted)) + ")'")   # an SQL literal inside a query
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value in wanted:
                out.append((node.lineno, node.value))
            else:
                out += [(node.lineno, m.group(1)) for m in quoted.finditer(node.value)]
    return sorted(out)


def code_files(root: Path = ROOT) -> dict[str, list[tuple[int, str]]]:
    """Project source files (not tests, not the virtualenv) → their energy-name literals."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("tests", ".venv", ".typecheck", ".run", "bench") or "site-packages" in rel.parts:
            continue
        found = literal_names(path)
        if found:
            out[str(rel)] = found
    return out


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else ROOT
    files = code_files(root)
    literals = sum(len(v) for v in files.values())
    for name, found in files.items():
        print(f"  {name}: " + ", ".join(f"{line}:{value}" for line, value in found))
    print(f"code files naming an energy type: {len(files)} ({literals} literals); "
          f"config files to add one: {len(CONFIG_FILES)} ({', '.join(CONFIG_FILES)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
