"""core/mqtt.py overrides paho's private methods (its packet reader, writer and PUBACK handling): a paho
release may rename or reorder them without notice, so the installed paho must be the minor version they
were tested against, and pyproject.toml's range must allow that version only."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from apt_energy.core.mqtt import PAHO_TESTED_MINOR

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_installed_paho_is_the_minor_version_the_private_overrides_are_tested_against() -> None:
    installed = tuple(int(x) for x in version("paho-mqtt").split(".")[:2])
    assert installed == PAHO_TESTED_MINOR, (
        f"paho-mqtt {version('paho-mqtt')} is installed, but core/mqtt.py's overrides of paho's private "
        f"methods are tested against {'.'.join(map(str, PAHO_TESTED_MINOR))}.x only: reinstall from the lock "
        "(make bootstrap), or re-test the overrides, then change PAHO_TESTED_MINOR and the pin together")


def test_pyproject_and_the_locks_pin_paho_to_that_minor_version() -> None:
    major, minor = PAHO_TESTED_MINOR
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"paho-mqtt>={major}.{minor},<{major}.{minor + 1}" in deps
    for lock in ("requirements.lock", "requirements-dev.lock"):
        pinned = re.search(r"(?m)^paho-mqtt==(\d+)\.(\d+)\.", (ROOT / lock).read_text())
        assert pinned and (int(pinned.group(1)), int(pinned.group(2))) == PAHO_TESTED_MINOR, lock
