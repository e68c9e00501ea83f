"""Configuration: the YAML files beside this module and their typed, frozen loader."""

from __future__ import annotations

from apt_energy.config.settings import (
    PROJECT_ROOT,
    ComplexSettings,
    EnergyType,
    Household,
    Secret,
    Settings,
    env_overrides,
    load,
)

__all__ = [
    "PROJECT_ROOT",
    "ComplexSettings",
    "EnergyType",
    "Household",
    "Secret",
    "Settings",
    "env_overrides",
    "load",
]
