"""How the code is laid out, in numbers the architecture issue asks for (run: ``python -m tests.census``).

* places that take the whole ``Settings`` (a parameter annotated ``Settings``), below the application and in it;
* classes that keep it (``self.x = <a Settings parameter>`` or an attribute annotated ``Settings``);
* modules over 300 lines;
* ``duplicates`` pairs (the tool library's repetition finder), where it is installed.

Read from the source with ``ast`` (nothing is imported), over the same package → folder map the layer test uses.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from tests.test_layers import APP, MODULES, layer_of, package_of

ROOT = Path(__file__).resolve().parent.parent
LONG = 300


def _annotated_settings(node: ast.expr | None) -> bool:
    return node is not None and isinstance(node, ast.Name | ast.Attribute | ast.Constant) and (
        ast.unparse(node).strip("'\"").rsplit(".", 1)[-1] == "Settings")


def settings_params(tree: ast.AST) -> list[str]:
    """Functions with a parameter annotated ``Settings`` (``from_settings`` doors included: they are places too)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            if any(_annotated_settings(a.annotation) for a in args):
                found.append(node.name)
    return found


def settings_keepers(tree: ast.AST) -> list[str]:
    """Classes that keep a ``Settings``: an attribute annotated with it, or ``self.x = p`` for a Settings ``p``."""
    keepers = []
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        keeps = any(isinstance(s, ast.AnnAssign) and _annotated_settings(s.annotation) for s in cls.body)
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            params = {a.arg for a in fn.args.args + fn.args.kwonlyargs if _annotated_settings(a.annotation)}
            for s in ast.walk(fn):
                if isinstance(s, ast.Assign) and isinstance(s.value, ast.Name) and s.value.id in params:
                    keeps |= any(isinstance(t, ast.Attribute) and ast.unparse(t.value) == "self" for t in s.targets)
                if isinstance(s, ast.AnnAssign) and _annotated_settings(s.annotation) and \
                        isinstance(s.target, ast.Attribute):
                    keeps = True
        if keeps:
            keepers.append(cls.name)
    return keepers


class Census(NamedTuple):
    places: Counter[str]          # "application" / "below the application" (", doors") → parameters taking Settings
    files: Counter[str]           # the same → files with at least one
    keepers: list[str]            # module.Class below the application that keeps a Settings
    long: list[tuple[str, int]]   # (path, lines) over LONG


def census() -> Census:
    places: Counter[str] = Counter()
    files: Counter[str] = Counter()
    keepers: list[str] = []
    long_modules: list[tuple[str, int]] = []
    for module, path in sorted(MODULES.items()):
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        if not (package_of(module) == "apt_energy.config" and path.stem == "settings"):  # where it is defined
            where = "application" if layer_of(module) == APP else "below the application"
            found = settings_params(tree)
            doors = sum(name == "from_settings" for name in found)
            places[where] += len(found) - doors
            places[f"{where}, doors"] += doors
            files[where] += bool(found)
            keepers += [f"{module}.{c}" for c in settings_keepers(tree) if layer_of(module) != APP]
        lines = text.count("\n")
        if lines > LONG:
            long_modules.append((str(path.relative_to(ROOT)), lines))
    return Census(places, files, keepers, long_modules)


def duplicate_pairs() -> str:
    tool = shutil.which("duplicates")
    if tool is None:
        return "duplicates: not installed here"
    out = subprocess.run([tool, "--repo", str(ROOT), "--seconds", "120"], capture_output=True, text=True,
                         check=False).stdout
    return out.splitlines()[0] if out else "duplicates: no output"


def main() -> int:
    c = census()
    for where in ("below the application", "application"):
        print(f"Settings taken {where}: {c.places[where]} places and {c.places[where + ', doors']} "
              f"from_settings doors, in {c.files[where]} files")
    print(f"classes below the application keeping Settings: {len(c.keepers)} {' '.join(c.keepers)}")
    print(f"modules over {LONG} lines: {len(c.long)}")
    for path, lines in sorted(c.long, key=lambda x: -x[1]):
        print(f"  {lines:5d} {path}")
    print(duplicate_pairs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
