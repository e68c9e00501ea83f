from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apt_energy.config.settings import DEFAULT_CONFIG_DIR, Secret

from apt_energy import config
from apt_energy.errors import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    for name in ("complex.yaml", "pipeline.yaml", "messages.yaml"):
        shutil.copy(DEFAULT_CONFIG_DIR / name, tmp_path / name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_default_complex_has_840_households_and_building_11_holds_40() -> None:
    households = config.load(environ={}).complex.households()
    assert len(households) == 840
    assert sum(1 for h in households if h.building == 11) == 40
    assert all(sum(1 for h in households if h.building == b) == 80 for b in range(1, 11))
    assert len({h.device_id for h in households}) == 840


def test_device_id_and_unit_code_follow_the_door_number() -> None:
    h = config.Household("hanbit", 3, 12, 4)
    assert h.unit_code == "1204"
    assert h.device_id == "hanbit-03-1204"


def test_original_design_defaults_are_configured() -> None:
    s = config.load(environ={})
    assert s.energy["electricity"].emission_factor.value == 0.4747
    assert s.energy["water"].emission_factor.value == 0.449
    assert s.energy["heating"].emission_factor.value == 0.202
    assert s.rules.thresholds["electricity"].warning == 500
    assert s.rules.thresholds["heating"].warning == 1200
    assert s.complex.timezone == "Asia/Seoul"
    assert {e.label_ko for e in s.energy.values()} == {"전력", "난방", "수도"}


def test_bad_yaml_names_the_file_and_line(config_dir: Path) -> None:
    (config_dir / "pipeline.yaml").write_text("mqtt:\n  port: [1883\n")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: line \d+: not valid YAML"):
        config.load(config_dir, environ={})


def test_unknown_key_is_named_with_the_known_ones(config_dir: Path) -> None:
    edit(config_dir / "pipeline.yaml", "  keepalive_s: 30", "  keepalive_s: 30\n  colour: blue")
    with pytest.raises(ConfigError, match=r"mqtt.colour: expected one of the known keys \(.*keepalive_s.*\)"):
        config.load(config_dir, environ={})


def test_wrong_type_names_key_and_expected_form(config_dir: Path) -> None:
    edit(config_dir / "pipeline.yaml", "  port: 8883", "  port: eighteen")
    with pytest.raises(ConfigError, match=r"pipeline.yaml: mqtt.port: expected an integer, got 'eighteen'"):
        config.load(config_dir, environ={})


def test_negative_emission_factor_is_rejected(config_dir: Path) -> None:
    edit(config_dir / "complex.yaml", "value: 0.4747", "value: -0.4747")
    with pytest.raises(ConfigError, match=r"energy.electricity.emission_factor.value: expected a number ≥ 0"):
        config.load(config_dir, environ={})


def test_missing_required_key(config_dir: Path) -> None:
    edit(config_dir / "complex.yaml", "  timezone: Asia/Seoul", "")
    with pytest.raises(ConfigError, match=r"complex.timezone: expected a string \(required\)"):
        config.load(config_dir, environ={})


def test_unknown_time_zone(config_dir: Path) -> None:
    edit(config_dir / "complex.yaml", "timezone: Asia/Seoul", "timezone: Mars/Olympus")
    with pytest.raises(ConfigError, match=r"complex.timezone: expected an IANA time zone"):
        config.load(config_dir, environ={})


def test_environment_overrides_yaml_and_bad_env_value_names_the_variable(config_dir: Path) -> None:
    assert config.load(config_dir, environ={"APT_ENERGY_MQTT_PORT": "1999"}).mqtt.port == 1999
    assert config.load(config_dir, environ={"APT_ENERGY_RULES_THRESHOLDS_ELECTRICITY_WARNING": "450"}
                       ).rules.thresholds["electricity"].warning == 450.0
    with pytest.raises(ConfigError, match=r"env APT_ENERGY_MQTT_PORT: mqtt.port: expected an integer"):
        config.load(config_dir, environ={"APT_ENERGY_MQTT_PORT": "x"})


def test_secrets_come_from_the_environment_and_are_masked(config_dir: Path) -> None:
    s = config.load(config_dir, environ={"SLACK_BOT_TOKEN": "xoxb-very-secret"})
    assert s.secrets.slack_bot_token.reveal() == "xoxb-very-secret"
    assert "xoxb" not in repr(s) and "xoxb" not in str(s.secrets.slack_bot_token)
    assert repr(Secret("")) == "Secret('')"


def test_secrets_in_yaml_are_refused(config_dir: Path) -> None:
    with open(config_dir / "pipeline.yaml", "a") as fh:
        fh.write("secrets:\n  slack_bot_token: xoxb\n")
    with pytest.raises(ConfigError, match="never in YAML"):
        config.load(config_dir, environ={})


def test_settings_are_frozen() -> None:
    s = config.load(environ={})
    with pytest.raises(AttributeError):
        s.mqtt.port = 1  # type: ignore[misc]


def test_cli_exits_2_with_one_line_on_bad_config(config_dir: Path) -> None:
    edit(config_dir / "pipeline.yaml", "  port: 5433", "  port: 99999")
    result = subprocess.run([sys.executable, "-m", "apt_energy", "config", "--check"], capture_output=True,
                            text=True, env={"APT_ENERGY_CONFIG_DIR": str(config_dir), "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "postgres.port: expected an integer 1-65535, got 99999" in result.stderr
