"""The MQTT topic scheme, one place for building and parsing it.

    <prefix>/<complex>/<building>/<unit>/status            retained, online/offline (LWT)
    <prefix>/<complex>/<building>/<unit>/meta              retained, who the device is
    <prefix>/<complex>/<building>/<unit>/cmd               commands to the device
    <prefix>/<complex>/<building>/<unit>/<meter>/reading   QoS 1 readings

``building`` is two digits (``07``) and ``unit`` the door number (``1203``: floor 12, unit 3), so
MQTT Explorer shows the complex as building → flat → meter. The device id is derived from the path
(``hanbit-07-1203``), which lets the bridge reject a payload that claims another device. Only the
canonical spelling parses (``7`` or ``007`` for building 07 do not), so one device has one set of topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from apt_energy.config import Household
from apt_energy.core.errors import InvalidInput

__all__ = ["KINDS", "MAX_TOPIC_LENGTH", "DeviceTopic", "InvalidInput", "device_base", "parse", "reading_topic"]

Kind = Literal["status", "meta", "cmd", "reading"]
KINDS: Final = ("status", "meta", "cmd", "reading")
MAX_TOPIC_LENGTH: Final = 256    # ours are < 80 characters; quarantine.source_topic is VARCHAR(255)

_COMPLEX = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")           # ComplexSettings.id
_BUILDING = re.compile(r"(?:0[1-9]|[1-9][0-9]{1,3})")       # f"{building:02d}", building ≥ 1
_UNIT = re.compile(r"[1-9][0-9]?(?:0[1-9]|[1-9][0-9])")     # f"{floor}{unit:02d}", floor and unit 1-99
_METER = re.compile(r"[a-z][a-z0-9_]{0,19}")                # energy keys (Settings)
_DEVICE_KINDS: Final[dict[str, Kind]] = {"status": "status", "meta": "meta", "cmd": "cmd"}


@dataclass(frozen=True)
class DeviceTopic:
    complex_id: str
    building: int
    unit_code: str
    kind: Kind
    meter: str | None = None

    @property
    def device_id(self) -> str:
        return f"{self.complex_id}-{self.building:02d}-{self.unit_code}"


def device_base(prefix: str, household: Household) -> str:
    return f"{prefix}/{household.complex_id}/{household.building:02d}/{household.unit_code}"


def reading_topic(prefix: str, household: Household, meter: str) -> str:
    return f"{device_base(prefix, household)}/{meter}/reading"


def parse(prefix: str, topic: str | bytes) -> DeviceTopic:
    """Split a device topic. Total: for any ``str`` or ``bytes`` it returns a :class:`DeviceTopic` or
    raises :class:`InvalidInput` saying why, never anything else."""
    if isinstance(topic, bytes | bytearray):
        if len(topic) > MAX_TOPIC_LENGTH * 4:
            raise InvalidInput(f"topic longer than {MAX_TOPIC_LENGTH} characters")
        try:
            topic = bytes(topic).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("topic is not UTF-8") from None
    if not isinstance(topic, str):
        raise InvalidInput(f"topic is a {type(topic).__name__}, not text")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidInput(f"topic longer than {MAX_TOPIC_LENGTH} characters")
    head = prefix + "/"
    if not topic.startswith(head):
        raise InvalidInput(f"topic outside prefix {prefix!r}")
    parts = topic[len(head):].split("/")
    if len(parts) not in (4, 5):
        raise InvalidInput("topic outside the scheme <complex>/<building>/<unit>/...")
    complex_id, building, unit_code = parts[0], parts[1], parts[2]
    if _COMPLEX.fullmatch(complex_id) is None:
        raise InvalidInput("complex level must be 1-32 characters of a-z, 0-9 and '-'")
    if _BUILDING.fullmatch(building) is None:
        raise InvalidInput("building level must be a number written with two digits or more (07)")
    if _UNIT.fullmatch(unit_code) is None:
        raise InvalidInput("unit level must be a door number: floor then two-digit unit (1203)")
    if len(parts) == 4:
        kind = _DEVICE_KINDS.get(parts[3])
        if kind is not None:
            return DeviceTopic(complex_id, int(building), unit_code, kind)
        raise InvalidInput("unknown device topic (expected status, meta or cmd)")
    if _METER.fullmatch(parts[3]) is None:
        raise InvalidInput("meter level must be an energy key of a-z, 0-9 and '_'")
    if parts[4] != "reading":
        raise InvalidInput("unknown meter topic (expected reading)")
    return DeviceTopic(complex_id, int(building), unit_code, "reading", parts[3])
