"""Shared by the benchmarks: the native stack, a results line, percentiles."""

from __future__ import annotations

import os
from pathlib import Path

from apt_energy.config import Settings
from apt_energy.stack import NativeStack
from apt_energy.stack.secrets import ensure_dotenv, write_private

from apt_energy import config
from apt_energy.mqtt import MqttRole, credentials

# Benchmarks isolate their MQTT traffic under test/<tag>/…, which the broker grants every role when
# mqtt.test_prefix_root is set (as the test session does).
TEST_PREFIX_ROOT = "test"


def stack_settings() -> Settings:
    ensure_dotenv()
    os.environ["APT_ENERGY_MQTT_TEST_PREFIX_ROOT"] = TEST_PREFIX_ROOT
    settings = config.load()
    stack = NativeStack(settings)
    stack.up()
    if not stack.mosquitto.grants_prefix_root(TEST_PREFIX_ROOT):
        stack.mosquitto.down()
        stack.mosquitto.up()
    return settings


def mosquitto_client_env(settings: Settings, role: MqttRole, directory: Path) -> dict[str, str]:
    """Environment for ``mosquitto_pub``/``mosquitto_sub`` logging in as ``role`` over TLS: the options go in
    the clients' own 0600 options file ($XDG_CONFIG_HOME/mosquitto_pub), never on the command line."""
    username, password = credentials(settings, role)
    lines = [f"-u {username}", f"-P {password.reveal()}"]
    if settings.mqtt.tls:
        lines.append(f"--cafile {settings.mqtt_ca_file}")
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        write_private(directory / tool, "\n".join(lines) + "\n")
    return {**os.environ, "XDG_CONFIG_HOME": str(directory)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def report(name: str, figures: dict[str, float | str]) -> None:
    """Print a bench's detail lines (bench/report.py keeps the figures of a run in bench/results/)."""
    print(f"\n== {name}")
    for key, value in figures.items():
        print(f"  {key:<44} {value:,.3f}" if isinstance(value, float) else f"  {key:<44} {value}")
