"""Layers only point down: rules ← core ← database ← stages ← stack ← application.

The rules (``rules/``, one module per alert rule) are the lowest layer and import nothing of the project
but themselves: the settings loader (core) types and checks their parameters at load, and the stages
(spark evaluates them, alerts words them, dashboards and billing show and reuse them) import them.

The core (``apt_energy.core``, with ``apt_energy.config``) and the application (``apt_energy.app``) are two
packages; the ``apt_energy`` folder itself holds only the version and ``python -m apt_energy``.

Read from the source with ``ast`` (no imports run), so the test also catches imports inside functions.
Every module of the project must have a layer here; a new package has to be placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
# import namespace → folder (pyproject's package-dir)
FOLDERS = {
    "apt_energy": "apt_energy", "apt_energy.core": "core", "apt_energy.app": "app", "apt_energy.config": "config",
    "apt_energy.database": "database", "apt_energy.edge": "edge", "apt_energy.bridge": "bridge",
    "apt_energy.spark": "spark", "apt_energy.alerts": "alerts", "apt_energy.dashboards": "dashboards",
    "apt_energy.stack": "stack", "apt_energy.billing": "billing", "apt_energy.forecast": "forecast",
    "apt_energy.rules": "rules",
}
RULES, CORE, STORAGE, STAGE, OPS, APP = range(6)
LAYER_NAMES = {RULES: "rules", CORE: "core", STORAGE: "storage", STAGE: "stage", OPS: "ops", APP: "application"}
# Each package is one layer, by its name: a module's layer is where its folder stands, never a list of modules.
PACKAGE_LAYER = {
    "apt_energy.rules": RULES,
    "apt_energy": CORE,            # only the version (and ``__main__``, an entry point)
    "apt_energy.core": CORE, "apt_energy.config": CORE,
    "apt_energy.database": STORAGE,
    "apt_energy.edge": STAGE, "apt_energy.bridge": STAGE, "apt_energy.spark": STAGE, "apt_energy.alerts": STAGE,
    "apt_energy.dashboards": STAGE, "apt_energy.billing": STAGE, "apt_energy.forecast": STAGE,
    "apt_energy.stack": OPS,
    "apt_energy.app": APP,
}


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 and ".".join(parts[:2]) in FOLDERS else "apt_energy"


def layer_of(module: str) -> int:
    """Entry points (``cli``, ``__main__``) of every package wire settings into components: application."""
    if module.rsplit(".", 1)[-1] in ("cli", "__main__"):
        return APP
    package = package_of(module)
    if package not in PACKAGE_LAYER:
        pytest.fail(f"{package} has no layer: add it to PACKAGE_LAYER in {__file__}")
    return PACKAGE_LAYER[package]


def project_modules() -> dict[str, Path]:
    found = {}
    for namespace, folder in FOLDERS.items():
        for path in (ROOT / folder).glob("*.py"):
            name = namespace if path.stem == "__init__" else f"{namespace}.{path.stem}"
            found[name] = path
    return found


def imports_of(path: Path) -> set[str]:
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "apt_energy":
                targets.update(f"apt_energy.{alias.name}" for alias in node.names)
            elif node.module.startswith("apt_energy."):
                targets.add(node.module)
        elif isinstance(node, ast.Import):
            targets.update(a.name for a in node.names if a.name.startswith("apt_energy"))
    return targets


MODULES = project_modules()


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_point_down(module: str) -> None:
    mine = layer_of(module)
    for target in imports_of(MODULES[module]):
        if target not in MODULES:
            continue  # a name imported from a package (``from apt_energy import config``) resolves below
        theirs = layer_of(target)
        same_package = package_of(target) == package_of(module)
        assert theirs < mine or (theirs == mine and (same_package or mine in (CORE, APP))), (
            f"{module} ({LAYER_NAMES[mine]}) imports {target} ({LAYER_NAMES[theirs]}): "
            "layers only point down, and a stage imports no other stage")


def test_the_ground_holds_only_the_core() -> None:
    # A module dropped into apt_energy/ would be neither core nor application: it has to pick its package.
    assert {p.name for p in (ROOT / "apt_energy").glob("*.py")} == {"__init__.py", "__main__.py"}
    assert layer_of("apt_energy.__main__") == APP and layer_of("apt_energy") == CORE


def test_the_layer_rule_catches_an_upward_import(tmp_path: Path) -> None:
    # The rule itself can fail: core importing the CLI would be reported.
    assert layer_of("apt_energy.core.contract") < layer_of("apt_energy.app.cli")
    assert layer_of("apt_energy.edge.fleet") < layer_of("apt_energy.stack.native") < layer_of("apt_energy.app.demo")


def test_the_rules_import_nothing_of_the_project_but_themselves() -> None:
    # Below core: a rule module that reached for the settings, a stage or the database would make the
    # loader (which imports the rules) circular, and the rule no longer one self-contained module.
    rules = [m for m in MODULES if package_of(m) == "apt_energy.rules"]
    assert "apt_energy.rules.registry" in rules and "apt_energy.rules.night_flow" in rules
    for module in rules:
        outside = {t for t in imports_of(MODULES[module]) if not t.startswith("apt_energy.rules")}
        assert not outside, f"{module} imports {sorted(outside)}: the rules import only the rules"
    assert layer_of("apt_energy.rules.threshold") < layer_of("apt_energy.config.settings") < \
        layer_of("apt_energy.spark.evaluation") == layer_of("apt_energy.alerts.message")
