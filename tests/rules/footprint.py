"""Where the rules are named in the source: the files a newcomer adding a rule would have to find and edit.

Counts, per rule, the project files outside ``tests/``, ``bench/`` and the rules' own package that name it:
Python string constants equal to one of its alert names or its key, and attribute reads of its key on a
``rules`` section (``settings.rules.peer``, ``self.options.rules.night_flow``, ``cfg.thresholds``), fields
named by its key (``peer: PeerRule``); in YAML
and SQL files, the name as a word. Run it on the working tree or on any commit::

    .venv/bin/python tests/rules/footprint.py            # the working tree
    .venv/bin/python tests/rules/footprint.py ade8030    # a commit (read with git show)
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# rule key → its alert names (the four rules of the project, as they were before the rules/ package too)
RULES = {"thresholds": ("threshold", "threshold_critical"), "night_flow": ("night_flow",), "peer": ("peer",),
         "projection": ("projection",)}
SKIP = ("tests/", "bench/", "dashboards/json/", "database/migrations/")   # tests; generated JSON; history


def _python_mentions(text: str, key: str, names: tuple[str, ...]) -> bool:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return False
    words = {key, *names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in words:
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == key:
            return True     # a field of a rules section (``peer: PeerRule``)
        if isinstance(node, ast.Attribute) and node.attr == key:
            base = node.value
            owner = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if owner in ("rules", "cfg"):
                return True
    return False


def _text_mentions(text: str, key: str, names: tuple[str, ...]) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(w)}(?![\w])\s*:", text) for w in (key, *names)) or any(
        re.search(rf"'{re.escape(w)}'", text) for w in names)


def mentions(paths: Iterable[str], read: Callable[[str], str]) -> dict[str, list[str]]:
    """Rule key → the files that name it, besides the rules' own package (``rules/``; before it there
    was none: ``spark/rules.py`` counts)."""
    found: dict[str, list[str]] = {key: [] for key in RULES}
    for path in sorted(paths):
        if path.startswith((*SKIP, "rules/")) or not path.endswith((".py", ".yaml", ".sql")):
            continue
        text = read(path)
        for key, names in RULES.items():
            hit = _python_mentions(text, key, names) if path.endswith(".py") else _text_mentions(text, key, names)
            if hit:
                found[key].append(path)
    return found


def at(rev: str | None) -> dict[str, list[str]]:
    """The mentions in the working tree (``None``) or at a commit."""
    if rev is None:
        paths = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               check=True, capture_output=True, text=True).stdout.split()
        return mentions(paths, lambda p: (ROOT / p).read_text(encoding="utf-8") if (ROOT / p).exists() else "")
    paths = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.split()
    return mentions(paths, lambda p: subprocess.run(["git", "show", f"{rev}:{p}"], cwd=ROOT, check=True,
                                                    capture_output=True, text=True).stdout)


def main(argv: list[str]) -> int:
    rev = argv[1] if len(argv) > 1 else None
    found = at(rev)
    every = sorted({p for files in found.values() for p in files})
    for key, files in found.items():
        print(f"{key}: {len(files)} files outside rules/: {', '.join(files)}")
    print(f"any rule: {len(every)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
