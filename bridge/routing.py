"""Where a received MQTT message goes: the readings topic, the devices topic, or dead letters.

:func:`route` is total: any topic (bytes or text, any length, wildcards, not UTF-8) and any payload
(empty, binary, huge, deeply nested, NaN, duplicate keys) yields a :class:`Route`, never an exception.
One hostile publish must not stop ingestion: an exception here would leave the message unacknowledged,
the broker would redeliver it on the next start, and the bridge would crash again, forever.

Validation here is deliberately light (the Spark job validates every field, with the same contract): what makes a
message unusable or untrustworthy as a whole, or ambiguous to the parsers after us (duplicate keys,
NaN). A rejected message is never dropped; it goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import Final, Literal

from apt_energy.core import canonical, contract, topics
from apt_energy.core.contract import ContractError, Reason
from apt_energy.core.errors import InvalidInput

logger = logging.getLogger(__name__)

Kind = Literal["reading", "device", "dead", "skip"]
READING: Final = "reading"
DEVICE: Final = "device"
DEAD: Final = "dead"
SKIP: Final = "skip"

# A real topic is under 100 bytes past the prefix; anything much longer is hostile, and bounding it
# bounds the Kafka key and the ``mqtt.topic`` header of its dead letter.
MAX_TOPIC_BYTES: Final = 512
MAX_KEY_BYTES: Final = 200
# The largest payload Mosquitto accepts (``message_size_limit`` in the stack's and compose's configs); the
# bridge's own ``max_payload_bytes`` is at most this. Kafka's default record limit is 1 MB: a forwarded
# record or a truncated dead letter stays far under it.
MESSAGE_SIZE_LIMIT: Final = 256 * 1024

Header = tuple[str, str | bytes | None]


@dataclass(frozen=True)
class Route:
    """The decision for one message: which topic kind, which Kafka key, and why if it is dead."""

    kind: Kind           # skip: commands to devices (not telemetry), acknowledged and not forwarded
    key: bytes           # Kafka key: the device id (per-household order); the device topic adds the kind
    reason: str = ""     # why it is dead-lettered (``<class>: <detail>``; the class is before the colon)


def topic_bytes(topic: str | bytes) -> bytes:
    """The topic as sent (``surrogatepass`` keeps a broken text topic encodable, to be rejected later)."""
    return topic if isinstance(topic, bytes) else topic.encode("utf-8", "surrogatepass")


def route(prefix: str, topic: str | bytes, payload: bytes, *, max_bytes: int) -> Route:
    """Decide where one MQTT message goes; never raises."""
    try:
        return _route(prefix, topic, payload, max_bytes)
    except Exception as exc:  # a surprise in a helper (topics, json) is a dead letter, not a stopped stage
        logger.warning("routing failed topic=%r error=%r; dead-lettered", topic_bytes(topic)[:MAX_KEY_BYTES], exc,
                       exc_info=True)
        return Route(DEAD, _clip(topic_bytes(topic)), f"internal: {type(exc).__name__}")


def _clip(key: bytes) -> bytes:
    return key[:MAX_KEY_BYTES]


def _route(prefix: str, topic: str | bytes, payload: bytes, max_bytes: int) -> Route:
    judged = _judge_topic(prefix, topic)
    if isinstance(judged, Route):
        return judged
    parsed, key = judged
    if parsed.kind == "reading":
        # A reading as the edge writes it is strict JSON by its form: only its names need a look (the
        # hot path; load_json was a quarter of the bridge's CPU). Anything else, or a mismatch, goes on
        # to load_json, which gives the reason.
        named = canonical.names(payload, max_bytes=max_bytes)
        if named is not None and named == (key, (parsed.meter or "").encode()):
            return Route(READING, key)
    # The contract's own strict JSON (one validation for the bridge and the stream job, same reason codes):
    # size, UTF-8, depth, duplicate keys, NaN/Infinity, what jsonb would refuse. The fields themselves are
    # judged by the stream job with the same contract, so its quarantine keeps the raw record and offsets.
    try:
        data = contract.load_json(payload, max_bytes=max_bytes)
    except ContractError as exc:
        return Route(DEAD, key, str(exc))
    if not isinstance(data, dict):
        return Route(DEAD, key, f"{Reason.NOT_OBJECT}: a JSON {type(data).__name__}")
    claimed = data.get("device_id")
    if claimed != parsed.device_id:
        return Route(DEAD, key, f"{Reason.DEVICE_MISMATCH}: payload says {_show(claimed, 64)}, "
                                f"topic says {parsed.device_id!r}")
    if parsed.kind == "reading":
        if data.get("meter") != parsed.meter:
            return Route(DEAD, key, f"{Reason.METER_MISMATCH}: payload says {_show(data.get('meter'), 32)}, "
                                    f"topic says {parsed.meter!r}")
        return Route(READING, key)
    # status and meta share the compacted devices topic: the key names both, so one never
    # compacts the other away
    return Route(DEVICE, f"{parsed.device_id}/{parsed.kind}".encode())


def _judge_topic(prefix: str, topic: str | bytes) -> Route | tuple[topics.DeviceTopic, bytes]:
    """The topic's verdict: a Route when the topic alone decides (dead, skip), else (parsed, Kafka key).
    A fleet repeats a few thousand topics, so text topics are judged once (bounded cache)."""
    return _judge_text_topic(prefix, topic) if isinstance(topic, str) else _judge_raw_topic(prefix, topic)


@functools.lru_cache(maxsize=16384)
def _judge_text_topic(prefix: str, topic: str) -> Route | tuple[topics.DeviceTopic, bytes]:
    return _judge_raw_topic(prefix, topic)


def _judge_raw_topic(prefix: str, topic: str | bytes) -> Route | tuple[topics.DeviceTopic, bytes]:
    raw = topic_bytes(topic)
    if len(raw) > MAX_TOPIC_BYTES:
        return Route(DEAD, _clip(raw), f"bad_topic: {len(raw)} bytes > {MAX_TOPIC_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return Route(DEAD, _clip(raw), "bad_topic: not UTF-8")
    if any(c in text for c in "+#\x00"):
        return Route(DEAD, _clip(raw), "bad_topic: wildcard or NUL in a topic name")
    try:
        parsed = topics.parse(prefix, text)
        key = parsed.device_id.encode()
    except InvalidInput as exc:
        return Route(DEAD, _clip(raw), f"bad_topic: {exc}")
    except Exception as exc:  # topics.parse promises InvalidInput; if it breaks that promise, still a dead letter
        logger.warning("topic parser raised topic=%r error=%r", raw[:MAX_KEY_BYTES], exc, exc_info=True)
        return Route(DEAD, _clip(raw), f"bad_topic: {type(exc).__name__}")
    if len(key) > MAX_KEY_BYTES:
        return Route(DEAD, _clip(raw), f"bad_topic: device id of {len(key)} bytes")
    if parsed.kind == "cmd":
        return Route(SKIP, key)
    return parsed, key


def _show(value: object, limit: int) -> str:
    """A short, safe description of a claimed value (``str()`` of a deep structure could recurse)."""
    if isinstance(value, str):
        return repr(value[:limit])
    if value is None:
        return "nothing"
    return f"a {type(value).__name__}"


def dead_letter_value(payload: bytes, *, keep: int) -> tuple[bytes, list[Header]]:
    """The value of a dead letter and headers describing what was cut: at most ``keep`` bytes of the
    payload, so the record always fits Kafka's message size; the original size and sha256 identify it."""
    if len(payload) <= keep:
        return payload, []
    return payload[:keep], [("error.original_bytes", str(len(payload)).encode()),
                            ("error.sha256", hashlib.sha256(payload).hexdigest().encode())]
