"""Where a received MQTT message goes: the readings topic, the devices topic, or dead letters.

Validation here is deliberately light (the Spark job validates every field): only what makes a
message unusable or untrustworthy as a whole. A rejected message is never dropped; it goes to the
dead-letter topic with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from apt_energy import topics

READING, DEVICE, DEAD, SKIP = "reading", "device", "dead", "skip"


@dataclass(frozen=True)
class Route:
    kind: str            # reading | device | dead | skip (commands to devices: not telemetry)
    key: bytes           # Kafka key: the device id (per-household order); device topic adds the kind
    reason: str = ""     # why it is dead-lettered


def route(prefix: str, topic: str, payload: bytes, *, max_bytes: int) -> Route:
    try:
        parsed = topics.parse(prefix, topic)
    except topics.InvalidInput as exc:
        return Route(DEAD, topic.encode(errors="replace")[:200], f"bad_topic: {exc}")
    key = parsed.device_id.encode()
    if parsed.kind == "cmd":
        return Route(SKIP, key)
    if len(payload) > max_bytes:
        return Route(DEAD, key, f"too_large: {len(payload)} bytes > {max_bytes}")
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return Route(DEAD, key, "not_json")
    if not isinstance(data, dict):
        return Route(DEAD, key, "not_object")
    claimed = data.get("device_id")
    if claimed != parsed.device_id:
        return Route(DEAD, key, f"device_mismatch: payload says {str(claimed)[:64]!r}, topic says {parsed.device_id!r}")
    if parsed.kind == "reading":
        if data.get("meter") != parsed.meter:
            return Route(DEAD, key, f"meter_mismatch: payload says {str(data.get('meter'))[:32]!r}, "
                                    f"topic says {parsed.meter!r}")
        return Route(READING, key)
    # status and meta share the compacted devices topic: the key names both, so one never
    # compacts the other away
    return Route(DEVICE, f"{parsed.device_id}/{parsed.kind}".encode())
