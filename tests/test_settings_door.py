"""Stages take what they use: below the application layer no class keeps the whole ``Settings``.

Settings become narrow, frozen option objects at one door per component (a ``from_settings`` classmethod,
like ``Bridge.from_settings``); the component keeps the options, never the tree, so a simulated gateway
(up to 10,000 per process) cannot reach the database owner's password or the Slack token. Read from the
source with ``ast`` like tests/test_layers.py; a behavioural test walks a real fleet's device.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apt_energy.config import Secret
from apt_energy.edge.fleet import Fleet, FleetOptions

from apt_energy import config
from tests.test_layers import APP, MODULES, layer_of

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent


def _is_settings(annotation: ast.expr | None) -> bool:
    """``Settings``, ``config.Settings`` or a string/optional of it."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            annotation = ast.parse(annotation.value, mode="eval").body
        except SyntaxError:
            return False
    if isinstance(annotation, ast.BinOp):          # Settings | None
        return _is_settings(annotation.left) or _is_settings(annotation.right)
    if isinstance(annotation, ast.Name):
        return annotation.id == "Settings"
    if isinstance(annotation, ast.Attribute):
        return annotation.attr == "Settings"
    return False


def settings_keepers(source: str) -> list[str]:
    """``Class.attribute`` of every class attribute that holds a ``Settings``: a class-level annotation
    (a dataclass field), an annotated ``self.x: Settings``, or ``self.x = p`` where parameter ``p`` of the
    method is annotated ``Settings``. A ``from_settings`` door that only passes it on keeps nothing."""
    found: list[str] = []
    for cls in (n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ClassDef)):
        for item in cls.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and _is_settings(
                    item.annotation):
                found.append(f"{cls.name}.{item.target.id}")
            if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = item.args
            params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs) if _is_settings(a.annotation)}
            for node in ast.walk(item):
                if isinstance(node, ast.AnnAssign) and _self_attr(node.target) and _is_settings(node.annotation):
                    found.append(f"{cls.name}.{_self_attr(node.target)}")
                elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name) and node.value.id in params:
                    found.extend(f"{cls.name}.{_self_attr(t)}" for t in node.targets if _self_attr(t))
    return found


def _self_attr(target: ast.expr) -> str | None:
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
        return target.attr
    return None


BELOW_APPLICATION = sorted(m for m in MODULES if layer_of(m) < APP and m != "apt_energy.config.settings")


@pytest.mark.parametrize("module", BELOW_APPLICATION)
def test_no_class_below_the_application_keeps_the_settings(module: str) -> None:
    keepers = settings_keepers(MODULES[module].read_text(encoding="utf-8"))
    assert not keepers, (f"{module} keeps the whole Settings in {', '.join(keepers)}: take the options it uses, "
                         "built at one door (a from_settings classmethod, like Bridge.from_settings)")


def test_the_door_rule_catches_a_class_that_keeps_the_settings() -> None:
    # The rule itself can fail: each way of keeping it is reported, passing it on is not.
    planted = '''
from dataclasses import dataclass
from apt_energy.config import Settings
from apt_energy import config

@dataclass
class Field:
    settings: Settings

class Assigned:
    def __init__(self, s: "Settings", n: int) -> None:
        self._s = s
        self.n = n

class Annotated:
    def start(self, tree: config.Settings | None) -> None:
        self.tree: Settings = tree

class Door:
    @classmethod
    def from_settings(cls, settings: Settings) -> "Door":
        return cls(settings.mqtt.host)
'''
    assert settings_keepers(planted) == ["Field.settings", "Assigned._s", "Annotated.tree"]


# ------------------------------------------------------------------------------ a device's secrets

def _secrets_of(settings: config.Settings) -> dict[str, str]:
    return {f.name: getattr(settings.secrets, f.name) for f in dataclasses.fields(settings.secrets)
            if isinstance(getattr(settings.secrets, f.name), Secret)}


_CODE = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, functools.partial, type)


def reachable_secrets(root: object, *, depth: int = 6) -> list[tuple[str, str]]:
    """(path, value) of every ``Secret`` and every str/bytes among ``root``'s data attributes, walked through
    objects, containers and dataclasses. Callables (the fleet's callbacks on a device) are not data: not
    followed."""
    out: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(obj: Any, path: str, left: int) -> None:
        if id(obj) in seen or left < 0 or isinstance(obj, _CODE):
            return
        if isinstance(obj, str | bytes):
            out.append((path, obj.decode("utf-8", "replace") if isinstance(obj, bytes) else obj))
            return
        if isinstance(obj, int | float | bool | datetime | type(None)):
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(k, f"{path}[key]", left - 1)
                walk(v, f"{path}[{k!r}]", left - 1)
        elif isinstance(obj, list | tuple | set | frozenset):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]", left - 1)
        else:
            attrs = dict(getattr(obj, "__dict__", {}))
            for name in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, name):
                    attrs[name] = getattr(obj, name)
            for name, v in attrs.items():
                walk(v, f"{path}.{name}", left - 1)

    walk(root, "device", depth)
    return out


@pytest.fixture
def secret_settings() -> config.Settings:
    """Settings with every secret set to a recognisable value (and no TLS: no CA file is needed)."""
    environ = {env: f"s3cret-{name}" for name, env in config.settings.Secrets.ENV_NAMES.items()
               if name != "slack_base_url"}
    return config.load(environ={**environ, "APT_ENERGY_MQTT_TLS": "false"}, dotenv=None)


def test_a_fleet_device_holds_no_secret_but_its_own(secret_settings: config.Settings, tmp_path: Path) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    households = secret_settings.complex.households()[:2]
    fleet = Fleet.from_settings(secret_settings, households,
                                FleetOptions(start=start, until=start + timedelta(hours=1)))
    device = fleet.devices[0]
    device.log_in()   # the paho client now holds its credentials too
    own = device.login.password if device.login else None
    assert own, "the device has its own login"
    found = reachable_secrets(device)
    system = _secrets_of(secret_settings)
    leaked = [(path, name) for path, value in found for name, secret in system.items() if secret in value]
    assert not leaked, f"a device reaches secrets of the system: {leaked}"
    secrets = [(path, value) for path, value in found if isinstance(value, Secret)]
    assert secrets and all(value == own for _, value in secrets), secrets
    # The other device's password is not reachable from this one either.
    other = fleet.devices[1].login
    assert other is not None and not any(other.password in value for _, value in found)


def test_the_secret_walk_finds_a_planted_secret(secret_settings: config.Settings) -> None:
    # The behavioural check can fail: a device that kept the settings would be caught.
    start = datetime(2024, 1, 1, tzinfo=UTC)
    fleet = Fleet.from_settings(secret_settings, secret_settings.complex.households()[:1],
                                FleetOptions(start=start, until=start + timedelta(hours=1)))
    device = fleet.devices[0]
    device.__dict__["settings"] = secret_settings
    found = reachable_secrets(device)
    assert any("s3cret-db_owner_password" == value for _, value in found)
    assert any("s3cret-slack_bot_token" == value for _, value in found)
