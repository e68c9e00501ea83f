"""``apt-energy config``: every setting, its environment variable and its current value."""

from __future__ import annotations

import argparse
from typing import Any

from apt_energy.config.settings import ENV_PREFIX, Secrets, Settings, env_overrides, load


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("config", help="show every setting with its environment variable and value",
                       description=f"Any setting can be overridden by {ENV_PREFIX}<SECTION>_<KEY>.")
    p.add_argument("--check", action="store_true", help="only validate; exit 2 with one line if invalid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load()
    if args.check:
        print("config ok")
        return 0
    for key, env, _ in env_overrides(Settings, _as_raw(settings)):
        print(f"{env:<52} {key} = {_get(settings, key)!r}")
    for attr, env in Secrets.ENV_NAMES.items():
        print(f"{env:<52} secret {attr} = {'(set)' if getattr(settings.secrets, attr) else '(unset)'}")
    return 0


def _get(obj: Any, key: str) -> Any:
    for part in key.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def _as_raw(settings: Settings) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(settings)
