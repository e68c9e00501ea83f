from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apt_energy.config.settings import (
    DEFAULT_CONFIG_DIR,
    EXAMPLE_SECRET_PREFIX,
    PROJECT_ROOT,
    Secret,
    Secrets,
    Settings,
)
from apt_energy.core.errors import ConfigError
from apt_energy.rules import ProjectionRule

from apt_energy import config

pytestmark = pytest.mark.unit


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    for name in ("complex.yaml", "pipeline.yaml", "messages.yaml", "tariffs.yaml"):
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
        config.load(config_dir, environ={}, dotenv=None)


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


def test_the_spark_jit_is_quick_or_full(config_dir: Path) -> None:
    assert config.load(config_dir, environ={}).spark.jit == "quick"
    assert config.load(config_dir, environ={"APT_ENERGY_SPARK_JIT": "full"}).spark.jit == "full"
    with pytest.raises(ConfigError, match=r"spark.jit: expected quick or full"):
        config.load(config_dir, environ={"APT_ENERGY_SPARK_JIT": "fast"})


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
    edit(config_dir / "pipeline.yaml", "  partitions: 6", "  partitions: 0")   # no .env overrides it
    result = subprocess.run([sys.executable, "-m", "apt_energy", "config", "--check"], capture_output=True,
                            text=True, env={"APT_ENERGY_CONFIG_DIR": str(config_dir), "PATH": "/usr/bin"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "kafka.partitions: expected an integer ≥ 1, got 0" in result.stderr


@pytest.mark.parametrize("text", ["#alerts", "yes", "no", "1e3", "null", "~", "[a, b]", "{x: 1}", "  padded ", "'q'",
                                  "a: b", "- item", "&anchor", "*alias", "!!python/object", "%TAG", "@x", "`x`"])
def test_a_string_setting_takes_the_environment_text_as_it_is(config_dir: Path, text: str) -> None:
    s = config.load(config_dir, environ={"APT_ENERGY_SLACK_CHANNEL": text}, dotenv=None)
    assert s.slack.channel == text


@pytest.mark.parametrize(("name", "text", "attr", "value"), [
    ("APT_ENERGY_MQTT_PORT", "1999", ("mqtt", "port"), 1999),
    ("APT_ENERGY_MQTT_PORT", " 1999 ", ("mqtt", "port"), 1999),
    ("APT_ENERGY_SPARK_TRIGGER_S", "1e3", ("spark", "trigger_s"), 1000.0),
    ("APT_ENERGY_SPARK_TRIGGER_S", "2", ("spark", "trigger_s"), 2.0),
    ("APT_ENERGY_BRIDGE_SHARED_SUBSCRIPTION", "no", ("bridge", "shared_subscription"), False),
    ("APT_ENERGY_BRIDGE_SHARED_SUBSCRIPTION", "True", ("bridge", "shared_subscription"), True),
    ("APT_ENERGY_SIMULATION_HOUSEHOLD_SIZE_WEIGHTS", "[0.2, 0.2, 0.2, 0.2, 0.2]",
     ("simulation", "household_size_weights"), (0.2, 0.2, 0.2, 0.2, 0.2)),
])
def test_typed_settings_still_parse_from_the_environment(config_dir: Path, name: str, text: str,
                                                         attr: tuple[str, str], value: object) -> None:
    s = config.load(config_dir, environ={name: text}, dotenv=None)
    assert getattr(getattr(s, attr[0]), attr[1]) == value


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("APT_ENERGY_MQTT_PORT", "#1", "an integer"),
    ("APT_ENERGY_MQTT_PORT", "1e3", "an integer"),
    ("APT_ENERGY_SPARK_TRIGGER_S", "nan", "a number"),
    ("APT_ENERGY_BRIDGE_SHARED_SUBSCRIPTION", "maybe", "true or false"),
    ("APT_ENERGY_SIMULATION_HOUSEHOLD_SIZE_WEIGHTS", "[0.2, 0.2", "a list of numbers"),
])
def test_a_bad_environment_value_names_the_variable_and_the_expected_form(config_dir: Path, name: str, text: str,
                                                                           expected: str) -> None:
    with pytest.raises(ConfigError, match=rf"env {name}: .*expected {expected}"):
        config.load(config_dir, environ={name: text}, dotenv=None)


def environment_examples() -> list[tuple[str, str]]:
    """Every ``APT_ENERGY_…=value`` / ``export NAME=value`` the README and .env.example show."""
    found = []
    for doc in ("README.md", ".env.example"):
        text = (PROJECT_ROOT / doc).read_text(encoding="utf-8")
        for m in re.finditer(r"(?:export\s+([A-Z][A-Z0-9_]*)=(\S*))|\b(APT_ENERGY_[A-Z0-9_]+)=([^\s`]*)", text):
            name, value = (m[1], m[2]) if m[1] else (m[3], m[4])
            found.append((name, value.strip("'\"")))
    return sorted(set(found))


def test_the_documentation_shows_environment_examples() -> None:
    names = {n for n, _ in environment_examples()}
    assert {"APT_ENERGY_SLACK_CHANNEL", "APT_ENERGY_MQTT_PORT", "APT_ENERGY_SLACK_LANGUAGE"} <= names


@pytest.mark.parametrize(("name", "value"), environment_examples())
def test_every_environment_example_in_the_documentation_loads(config_dir: Path, name: str, value: str) -> None:
    settings_vars = {env: key for key, env, _ in config.env_overrides(Settings, {"rules": {"thresholds": {
        k: {} for k in config.load(config_dir, environ={}, dotenv=None).rules.thresholds}}})}
    assert name in settings_vars or name in Secrets.ENV_NAMES.values() or not name.startswith("APT_ENERGY_") \
        or name in ("APT_ENERGY_CONFIG_DIR", "APT_ENERGY_DB_ADMIN_PASSWORD", "APT_ENERGY_PUBLISH_ADDRESS"), \
        f"{name} is not a setting"
    if value.startswith(EXAMPLE_SECRET_PREFIX) and name in Secrets.ENV_NAMES.values():
        # .env.example's placeholders are refused by every command (`stack init` also refuses the admin's)
        with pytest.raises(ConfigError, match=rf"^{name} still has the example value"):
            config.load(config_dir, environ={name: value}, dotenv=None)
        return
    s = config.load(config_dir, environ={name: value}, dotenv=None)
    if name in settings_vars:
        node: object = s
        for part in settings_vars[name].split("."):
            node = node[part] if isinstance(node, dict) else getattr(node, part)
        assert node == value or str(node) == value or node == type(node)(value)


def test_each_building_has_its_unit_type_and_contract_area() -> None:
    complex_ = config.load(environ={}).complex
    areas = {b: getattr(complex_.unit_type_of(b), "contract_area_m2", None) for b in (1, 11)}
    assert areas == {1: 112.0, 11: 148.0}
    assert complex_.unit_type_of(99) is None


def test_projection_rule_is_typed_with_defaults_and_refuses_a_bad_tier() -> None:
    rule = config.load(environ={}).rules.projection
    assert (rule.tiers, rule.from_tier, rule.model, rule.thresholds) == (True, 3, "pooled", {"heating": 1200.0})
    with pytest.raises(ValueError, match="from_tier"):
        ProjectionRule(from_tier=4)
