"""The MQTT topic scheme, one place for building and parsing it.

    <prefix>/<complex>/<building>/<unit>/status            retained, online/offline (LWT)
    <prefix>/<complex>/<building>/<unit>/meta              retained, who the device is
    <prefix>/<complex>/<building>/<unit>/cmd               commands to the device
    <prefix>/<complex>/<building>/<unit>/<meter>/reading   QoS 1 readings

``building`` is two digits (``07``) and ``unit`` the door number (``1203``: floor 12, unit 3), so
MQTT Explorer shows the complex as building → flat → meter. The device id is derived from the path
(``hanbit-07-1203``), which lets the bridge reject a payload that claims another device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from apt_energy.config import Household
from apt_energy.errors import InvalidInput

KINDS = ("status", "meta", "cmd", "reading")
_LEVEL = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class DeviceTopic:
    complex_id: str
    building: int
    unit_code: str
    kind: str
    meter: str | None = None

    @property
    def device_id(self) -> str:
        return f"{self.complex_id}-{self.building:02d}-{self.unit_code}"


def device_base(prefix: str, household: Household) -> str:
    return f"{prefix}/{household.complex_id}/{household.building:02d}/{household.unit_code}"


def reading_topic(prefix: str, household: Household, meter: str) -> str:
    return f"{device_base(prefix, household)}/{meter}/reading"


def parse(prefix: str, topic: str) -> DeviceTopic:
    """Split a device topic; raises :class:`InvalidInput` for anything outside the scheme."""
    head = prefix + "/"
    if not topic.startswith(head):
        raise InvalidInput(f"topic outside prefix {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) not in (4, 5) or not all(_LEVEL.match(p) for p in parts):
        raise InvalidInput("topic outside the scheme <complex>/<building>/<unit>/...")
    complex_id, building, unit_code = parts[0], parts[1], parts[2]
    if not building.isdigit() or not unit_code.isdigit():
        raise InvalidInput("building and unit levels must be numbers")
    if len(parts) == 4:
        if parts[3] not in ("status", "meta", "cmd"):
            raise InvalidInput(f"unknown device topic {parts[3]!r}")
        return DeviceTopic(complex_id, int(building), unit_code, parts[3])
    if parts[4] != "reading":
        raise InvalidInput(f"unknown meter topic {parts[4]!r}")
    return DeviceTopic(complex_id, int(building), unit_code, "reading", parts[3])
