"""The registry: every module of this package that defines ``RULE`` is a rule. The settings loader types the
``rules:`` section from it, the sink evaluates what it lists, the notifier words alerts by it, the report and
the dashboards describe it. Adding a rule is adding a module (and its YAML section and texts)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import TYPE_CHECKING, Any

from apt_energy.rules.base import Rule


class Rules:
    """The ``rules:`` section of the settings: one attribute per registered rule, named by its key, holding
    its typed parameters (``settings.rules.night_flow.min_hours``). The loader builds the dataclass the
    current registry makes of it (:attr:`Registry.section`)."""

    if TYPE_CHECKING:
        def __getattr__(self, key: str) -> Any: ...

    def __reduce__(self) -> tuple[Any, ...]:
        # The section's class is made at run time, so pickle cannot find it by name: rebuild it from the
        # registry in use where it is unpickled (settings travel to subprocesses and Spark closures).
        return _section_of, ({f.name: getattr(self, f.name) for f in dataclasses.fields(self)},)  # type: ignore[arg-type]


class Registry:
    """The rules, in evaluation order."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = tuple(sorted(rules, key=lambda r: (r.order, r.key)))
        keys = [r.key for r in self.rules]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two rules with one key: {keys}")
        self._by_name = {name: r for r in self.rules for name in r.names}

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def with_rules(self, *rules: Rule) -> Registry:
        """This registry and ``rules`` (a test's, or a plug-in's)."""
        return Registry((*self.rules, *rules))

    def of_alert(self, name: str) -> Rule | None:
        """The rule that raises alerts named ``name`` (``threshold_critical`` → the threshold rule)."""
        return self._by_name.get(name)

    def unit_of(self, alert_rule: str, meter_unit: str) -> str:
        """The unit an alert's observed value and reference are in."""
        rule = self.of_alert(alert_rule)
        return rule.observed_unit if rule is not None and rule.observed_unit else meter_unit

    def params(self, section: Rules, key: str) -> Any:
        """One rule's parameters out of the settings' ``rules`` section."""
        return getattr(section, key)

    def missing_texts(self, messages: Mapping[str, Mapping[str, str]]) -> list[tuple[str, str]]:
        """``(messages.<language>.<key>, rule key)`` of every text a rule needs that a language lacks."""
        return [(f"messages.{lang}.{key}", rule.key) for lang, texts in messages.items() for rule in self.rules
                for key in rule.texts if key not in texts]

    @cached_property
    def section(self) -> type[Rules]:
        """The frozen dataclass of the ``rules:`` section: one field per rule, typed by its parameters."""
        required = [(r.key, r.params) for r in self.rules if r.default is None]
        optional = [(r.key, r.params, dataclasses.field(default_factory=r.default)) for r in self.rules
                    if r.default is not None]
        cls = dataclasses.make_dataclass("Rules", [*required, *optional], bases=(Rules,), frozen=True)
        cls.__module__ = __name__
        cls.__doc__ = Rules.__doc__
        return cls


def _section_of(values: Mapping[str, Any]) -> Rules:
    return current().section(**values)


def rules_of(modules: Iterable[ModuleType]) -> list[Rule]:
    """The ``RULE`` of each module that has one."""
    return [m.RULE for m in modules if isinstance(getattr(m, "RULE", None), Rule)]


def discover(package: str = "apt_energy.rules") -> Registry:
    """Every rule module of ``package``."""
    pkg = importlib.import_module(package)
    modules = [importlib.import_module(f"{package}.{info.name}") for info in pkgutil.iter_modules(pkg.__path__)]
    return Registry(rules_of(modules))


@dataclass
class _Current:
    registry: Registry | None = None


_CURRENT = _Current()


def current() -> Registry:
    """The registry in use: this package's rules (a test may :func:`install` another)."""
    if _CURRENT.registry is None:
        _CURRENT.registry = discover()
    return _CURRENT.registry


def install(registry: Registry | None) -> Registry | None:
    """Use ``registry`` from now on (``None``: this package's rules again); returns the one it replaces."""
    before, _CURRENT.registry = _CURRENT.registry, registry
    return before
