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

from apt_energy import __version__, logs
from config import ConfigError

# (subcommand module, one-line summary), in the order data flows.
COMMANDS = (
    "stack.cli",
    "database.cli",
    "edge.cli",
    "bridge.cli",
    "spark.cli",
    "spark.alerts_cli",
    "dashboards.cli",
    "apt_energy.demo",
    "config.cli",
)

EPILOG = """\
environment:
  APT_ENERGY_<SECTION>_<KEY>     override any setting in config/*.yaml (list: apt-energy config)
  APT_ENERGY_CONFIG_DIR          read the YAML files from another folder
  APT_ENERGY_DB_PASSWORD         writer role's password (generated into .env by `stack up`)
  APT_ENERGY_DB_READER_PASSWORD  read-only (Grafana) role's password
  APT_ENERGY_DB_ADMIN_PASSWORD   PostgreSQL superuser's (stack up / stack init only)
  APT_ENERGY_MQTT_PASSWORD       broker password for mqtt.username (compose's broker requires one)
  SLACK_BOT_TOKEN                Slack bot token (chat.postMessage to slack.channel)
  SLACK_WEBHOOK_URL              or a Slack incoming webhook
  APT_ENERGY_LOG_LEVEL           DEBUG, INFO (default), WARNING
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apt-energy", description="IoT energy pipeline for an apartment complex.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"apt-energy {__version__}")
    parser.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING (env: APT_ENERGY_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # a component not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"apt-energy: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_known(exc):
            print(f"apt-energy: {exc}", file=sys.stderr)
            return 1
        raise


def _is_known(exc: Exception) -> bool:
    """Errors our packages raise on purpose (their base exceptions) carry a message for the user."""
    ours = {"stack", "database", "edge", "bridge", "spark", "dashboards", "apt_energy"}
    return type(exc).__module__.split(".")[0] in ours


def run_component(command: str) -> None:
    """Entry for ``python -m <component>``: the same as ``apt-energy <command> ...``."""
    raise SystemExit(main([command, *sys.argv[1:]]))


if __name__ == "__main__":
    raise SystemExit(main())
