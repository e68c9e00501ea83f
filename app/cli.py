"""``apt-energy``: one console script, a subcommand per component.

Each component keeps its own CLI module (``stack/cli.py``, ``edge/cli.py``, …) exposing
``register(subparsers)``; this module only collects them, configures logging once and turns the
packages' errors into one-line messages and exit codes (2: configuration, 1: anything else).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from apt_energy.core import logs
from apt_energy.core.errors import AptEnergyError, ConfigError

from apt_energy import __version__

# (subcommand module, one-line summary), in the order data flows.
COMMANDS = (
    "apt_energy.stack.cli",
    "apt_energy.database.cli",
    "apt_energy.edge.cli",
    "apt_energy.bridge.cli",
    "apt_energy.spark.cli",
    "apt_energy.alerts.cli",
    "apt_energy.dashboards.cli",
    "apt_energy.app.pipeline",
    "apt_energy.app.demo",
    "apt_energy.config.cli",
    "apt_energy.billing.cli",
    "apt_energy.forecast.cli",
)

EPILOG = """\
environment (secrets live in .env, 0600; `apt-energy stack secrets` generates any that are missing):
  APT_ENERGY_<SECTION>_<KEY>         override any setting in config/*.yaml (list: apt-energy config)
  APT_ENERGY_CONFIG_DIR              read the YAML files from another folder
  APT_ENERGY_DB_OWNER_PASSWORD       owner role: migrations, seed, resets (stack up / stack init / demo)
  APT_ENERGY_DB_PASSWORD             writer role: the Spark sink and the notifier
  APT_ENERGY_DB_READER_PASSWORD      read-only role: Grafana
  APT_ENERGY_DB_ADMIN_PASSWORD       PostgreSQL superuser (stack up / stack init only)
  APT_ENERGY_KAFKA_{ADMIN,BRIDGE,SPARK}_PASSWORD
                                     each Kafka principal's SCRAM password
  APT_ENERGY_MQTT_DEVICE_SECRET      derives each gateway's own broker password
  APT_ENERGY_MQTT_{BRIDGE,OPERATOR,ADMIN}_PASSWORD
                                     the other broker identities
  SLACK_BOT_TOKEN                    Slack bot token (chat.postMessage to slack.channel)
  SLACK_WEBHOOK_URL                  or a Slack incoming webhook
  APT_ENERGY_LOG_LEVEL               DEBUG, INFO (default), WARNING
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apt-energy", description="IoT energy pipeline for an apartment complex.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"apt-energy {__version__}")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING (env: APT_ENERGY_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"apt-energy: config error: {exc}", file=sys.stderr)
        return exc.exit_code
    except AptEnergyError as exc:
        print(f"apt-energy: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def run_component(command: str) -> None:
    """Entry for ``python -m <component>``: the same as ``apt-energy <command> ...``."""
    raise SystemExit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())
