from __future__ import annotations

import json

import pytest
from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.routing import DEAD, DEVICE, READING, SKIP, route

pytestmark = pytest.mark.unit

GOOD = json.dumps({"device_id": "hanbit-01-101", "meter": "water", "seq": 1}).encode()


def r(topic: str, payload: bytes, max_bytes: int = 4096):  # type: ignore[no-untyped-def]
    return route("apt", topic, payload, max_bytes=max_bytes)


def test_readings_and_device_messages_are_keyed_by_device() -> None:
    assert r("apt/hanbit/01/101/water/reading", GOOD).kind == READING
    assert r("apt/hanbit/01/101/water/reading", GOOD).key == b"hanbit-01-101"
    status = r("apt/hanbit/01/101/status", b'{"device_id": "hanbit-01-101", "state": "online"}')
    assert (status.kind, status.key) == (DEVICE, b"hanbit-01-101/status")


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    ("apt/hanbit/01/101/water/reading", b"\x00garbage", "not_json"),
    ("apt/hanbit/01/101/water/reading", b"[1,2,3]", "not_object"),
    ("apt/hanbit/01/101/water/reading", b'{"device_id": "hanbit-01-' + b"9" * 5000 + b'"}', "too_large"),
    ("apt/hanbit/01/101/water/total", GOOD, "bad_topic"),
    ("elsewhere/x", GOOD, "bad_topic"),
    ("apt/hanbit/01/102/water/reading", GOOD, "device_mismatch"),
    ("apt/hanbit/01/101/heating/reading", GOOD, "meter_mismatch"),
    ("apt/hanbit/01/101/water", GOOD, "bad_topic"),
])
def test_each_bad_input_class_is_dead_lettered_with_its_reason(topic: str, payload: bytes, reason: str) -> None:
    routed = r(topic, payload)
    assert routed.kind == DEAD
    assert routed.reason.startswith(reason)


def test_acks_are_released_in_receipt_order_only() -> None:
    q = AckQueue()
    for token in (5, 6, 7):
        q.received(token)
    assert q.delivered(6) == []
    assert q.delivered(7) == []
    assert q.delivered(5) == [5, 6, 7]
    assert len(q) == 0
    q.received(8)
    q.forget()
    assert q.delivered(8) == [] and len(q) == 0


def test_commands_to_devices_are_skipped_not_dead_lettered() -> None:
    assert r("apt/hanbit/01/101/cmd", b'{"inject": "leak"}').kind == SKIP
