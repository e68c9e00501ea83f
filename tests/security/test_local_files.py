"""Local secrets: the .env file is private from its creation, and narrowed when found wider."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from apt_energy.stack.secrets import ensure_dotenv

pytestmark = pytest.mark.unit


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_env_file_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0o000)
    try:
        ensure_dotenv(tmp_path / ".env")
    finally:
        os.umask(old)
    assert _mode(tmp_path / ".env") == 0o600
    assert "APT_ENERGY_DB_OWNER_PASSWORD=" in (tmp_path / ".env").read_text()


def test_an_env_copied_with_0644_is_narrowed_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    env = tmp_path / ".env"
    env.write_text("APT_ENERGY_DB_PASSWORD=x\n")
    env.chmod(0o644)
    ensure_dotenv(env)
    assert _mode(env) == 0o600
    assert "readable by others" in caplog.text
    assert "APT_ENERGY_DB_PASSWORD=x\n" in env.read_text()  # existing values are kept


def test_example_values_are_replaced_and_refused_where_they_remain(tmp_path: Path) -> None:
    from apt_energy.config.settings import refuse_example_secrets
    from apt_energy.core.errors import ConfigError

    env = tmp_path / ".env"
    env.write_text("APT_ENERGY_DB_PASSWORD=change-me-writer\nSLACK_BOT_TOKEN=\nAPT_ENERGY_DB_OWNER_PASSWORD=mine\n")
    with pytest.raises(ConfigError, match=r"^APT_ENERGY_DB_PASSWORD still has the example value"):
        refuse_example_secrets({"APT_ENERGY_DB_PASSWORD": "change-me-writer"}, ["APT_ENERGY_DB_PASSWORD"])
    changed = ensure_dotenv(env)
    values = dict(line.split("=", 1) for line in env.read_text().splitlines() if "=" in line)
    assert "APT_ENERGY_DB_PASSWORD" in changed and not values["APT_ENERGY_DB_PASSWORD"].startswith("change-me")
    assert values["APT_ENERGY_DB_OWNER_PASSWORD"] == "mine" and values["SLACK_BOT_TOKEN"] == ""
    refuse_example_secrets(values, values)  # nothing left to refuse
