"""The dynamic-security plugin is found where the machine's Mosquitto put it, on any architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
from apt_energy.stack.mosquitto import PLUGIN_NAME, find_dynsec_plugin

pytestmark = pytest.mark.unit


def _plugin(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF")
    return path


def test_debian_arm64_multiarch_folder_is_found(tmp_path: Path) -> None:
    plugin = _plugin(tmp_path / "usr-lib" / "aarch64-linux-gnu" / PLUGIN_NAME)
    assert find_dynsec_plugin((tmp_path / "usr-lib", tmp_path / "usr-local-lib")) == str(plugin)


def test_a_plugin_directly_in_lib_is_found_as_alpine_and_source_builds_install_it(tmp_path: Path) -> None:
    plugin = _plugin(tmp_path / "usr-local-lib" / PLUGIN_NAME)
    assert find_dynsec_plugin((tmp_path / "usr-lib", tmp_path / "usr-local-lib")) == str(plugin)


def test_without_a_plugin_the_path_of_this_machines_multiarch_is_named(tmp_path: Path) -> None:
    found = Path(find_dynsec_plugin((tmp_path,)))
    assert found.name == PLUGIN_NAME and found.parent.parent == tmp_path
    assert found.parent.name.endswith("-linux-gnu") or found.parent.name.endswith("-linux-musl")
