"""Who may do what on the broker: one identity per household gateway, written for Mosquitto's
dynamic-security plugin (the file it reads at start).

- a **device** logs in as its device id with its own password, must use its device id as client id (so
  no gateway can take over another's session), may publish only its own household's ``status``, ``meta``
  and ``<meter>/reading`` topics — each configured meter by name, never a wildcard, so a device cannot
  make the broker keep retained topics under invented meter names — and subscribe only to its own ``cmd``;
- the **bridge** reads everything under the prefix and writes nothing;
- the **operator** (MQTT Explorer) reads everything and writes only ``cmd`` topics;
- the **admin** may do anything (tests and fault drills inject hostile traffic as it).

Device passwords come from :func:`apt_energy.core.mqtt.device_password`; the file holds PBKDF2-SHA512 hashes,
never a password.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from apt_energy.config import Secret

ITERATIONS = 101  # the plugin's own default


@dataclass(frozen=True)
class BrokerUser:
    username: str
    password: Secret
    role: str
    client_id: str | None = None


def password_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict[str, Any]:
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return {"password": base64.b64encode(digest).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": iterations}


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def device_role(household_topic: str, meters: Iterable[str]) -> list[dict[str, Any]]:
    """``household_topic`` is ``<prefix>/<complex>/<bb>/<door>``; ``meters`` the scheme's meter names
    (the energy keys of the settings)."""
    return [_acl("publishClientSend", f"{household_topic}/status"),
            _acl("publishClientSend", f"{household_topic}/meta"),
            *(_acl("publishClientSend", f"{household_topic}/{meter}/reading") for meter in meters),
            _acl("subscribePattern", f"{household_topic}/cmd")]


def render(*, prefix: str, devices: Iterable[tuple[str, str, Secret]], bridge: BrokerUser,
           operator: BrokerUser, admin: BrokerUser, meters: Iterable[str], test_prefix_root: str = "") -> str:
    """The plugin's JSON: ``devices`` are (device id, household topic, password), each allowed the
    readings of ``meters`` only. With a ``test_prefix_root``, every role's rights are repeated under
    ``<root>/+/…`` (tests only)."""
    meters = tuple(meters)
    if not meters or any(not m or set(m) & set("+#/") for m in meters):
        raise ValueError(f"meter names must be plain topic levels, got {meters!r}")
    prefixes = [prefix] + ([f"{test_prefix_root}/+"] if test_prefix_root else [])
    roles: list[dict[str, Any]] = [
        # Mosquitto checks a shared subscription with its "$share/<group>/" part, so both forms are granted.
        {"rolename": "bridge", "acls": [_acl("subscribePattern", t) for p in prefixes
                                        for t in (f"{p}/#", f"$share/+/{p}/#")]
                                       # read-only broker figures for its metrics (queue depth: bridge/metrics.py)
                                       + [_acl("subscribePattern", "$SYS/broker/#")]},
        {"rolename": "operator", "acls": [_acl("subscribePattern", "#"), _acl("subscribePattern", "$SYS/#"),
                                          *(_acl("publishClientSend", f"{p}/+/+/+/cmd") for p in prefixes)]},
        {"rolename": "admin", "acls": [_acl("subscribePattern", "#"), _acl("publishClientSend", "#"),
                                       # the plugin's own control topic: the admin manages identities at runtime
                                       _acl("publishClientSend", "$CONTROL/dynamic-security/#"),
                                       _acl("subscribePattern", "$CONTROL/dynamic-security/#"),
                                       _acl("publishClientReceive", "$CONTROL/dynamic-security/#")]},
    ]
    clients: list[dict[str, Any]] = []
    for user in (bridge, operator, admin):
        clients.append({"username": user.username, "roles": [{"rolename": user.role}],
                        **password_hash(user.password.reveal())})
    for device_id, household_topic, password in devices:
        role = f"device-{device_id}"
        acls = device_role(household_topic, meters)
        if test_prefix_root:
            acls += device_role(f"{test_prefix_root}/+{household_topic[len(prefix):]}", meters)
        roles.append({"rolename": role, "acls": acls})
        clients.append({"username": device_id, "clientid": device_id, "roles": [{"rolename": role}],
                        **password_hash(password.reveal())})
    return json.dumps({
        # Nothing is allowed that a role does not grant; receiving what one may subscribe to is.
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": True, "subscribe": False,
                             "unsubscribe": True},
        "clients": clients, "groups": [], "roles": roles,
    }, indent=1)

