"""Routing is total: any topic and any payload become a Kafka route or a dead letter with a reason."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from apt_energy.bridge.acks import AckQueue
from apt_energy.bridge.routing import (
    DEAD,
    DEVICE,
    MAX_KEY_BYTES,
    READING,
    SKIP,
    Route,
    dead_letter_value,
    route,
)
from apt_energy.core.contract import Reading
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

GOOD = json.dumps({"device_id": "hanbit-01-101", "meter": "water", "seq": 1}).encode()
GOOD_TOPIC = "apt/hanbit/01/101/water/reading"


def r(topic: str | bytes, payload: bytes, max_bytes: int = 8192) -> Route:
    return route("apt", topic, payload, max_bytes=max_bytes)


def assert_well_formed(routed: Route) -> None:
    assert routed.kind in (READING, DEVICE, DEAD, SKIP)
    assert isinstance(routed.key, bytes) and len(routed.key) <= MAX_KEY_BYTES
    assert (routed.kind == DEAD) == bool(routed.reason)
    routed.reason.encode("utf-8", "backslashreplace")  # travels as a header


def test_readings_and_device_messages_are_keyed_by_device() -> None:
    assert r(GOOD_TOPIC, GOOD).kind == READING
    assert r(GOOD_TOPIC, GOOD).key == b"hanbit-01-101"
    status = r("apt/hanbit/01/101/status", b'{"device_id": "hanbit-01-101", "state": "online"}')
    assert (status.kind, status.key) == (DEVICE, b"hanbit-01-101/status")


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (GOOD_TOPIC, b"\x00garbage", "not_json"),
    (GOOD_TOPIC, b"", "not_json"),
    (GOOD_TOPIC, b"[1,2,3]", "not_object"),
    (GOOD_TOPIC, b'{"device_id": "hanbit-01-' + b"9" * 9000 + b'"}', "too_large"),
    (GOOD_TOPIC, b"[" * 3000 + b"]" * 3000, "too_deep"),                        # RecursionError in json
    (GOOD_TOPIC, b'{"device_id": "hanbit-01-101", "meter": "water", "value": NaN}', "not_finite"),
    (GOOD_TOPIC, b'{"device_id": "hanbit-01-101", "meter": "water", "value": 1e999}', "not_finite"),
    (GOOD_TOPIC, b'{"device_id": "hanbit-01-101", "meter": "water", "seq": 1' + b"0" * 4400 + b"}", "not_json"),
    (GOOD_TOPIC, b'{"device_id": "hanbit-01-999", "device_id": "hanbit-01-101", "meter": "water"}', "duplicate_key"),
    (GOOD_TOPIC, '{"device_id": "hanbit-01-101", "meter": "water"}'.encode("utf-16"), "not_utf8"),
    (GOOD_TOPIC, b'{"device_id": ' + b"[" * 900 + b"]" * 900 + b"}", "too_deep"),
    ("apt/hanbit/01/101/water/total", GOOD, "bad_topic"),
    ("elsewhere/x", GOOD, "bad_topic"),
    ("apt", GOOD, "bad_topic"),
    ("", GOOD, "bad_topic"),
    ("apt/hanbit/" + "5" * 5000 + "/101/status", GOOD, "bad_topic"),            # int() refuses 5,000 digits
    ("apt/hanbit/" + "5" * 300 + "/101/status", GOOD, "bad_topic"),
    ("apt/hanbit/01/+/status", GOOD, "bad_topic"),
    ("apt/hanbit/01/#", GOOD, "bad_topic"),
    (b"apt/hanbit/01/\xff\xfe/status", GOOD, "bad_topic"),
    ("apt/hanbit/01/\udcff/status", GOOD, "bad_topic"),
    ("apt/hanbit/01/102/water/reading", GOOD, "device_mismatch"),
    ("apt/hanbit/01/101/heating/reading", GOOD, "meter_mismatch"),
    ("apt/hanbit/01/101/water", GOOD, "bad_topic"),
])
def test_each_bad_input_class_is_dead_lettered_with_its_reason(topic: str | bytes, payload: bytes,
                                                               reason: str) -> None:
    routed = r(topic, payload)
    assert routed.kind == DEAD
    assert routed.reason.split(":")[0] == reason
    assert_well_formed(routed)


def test_commands_to_devices_are_skipped_not_dead_lettered() -> None:
    assert r("apt/hanbit/01/101/cmd", b'{"inject": "leak"}').kind == SKIP


def test_a_topic_parser_that_raises_something_unexpected_gives_a_dead_letter(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from apt_energy.bridge import routing
    from apt_energy.core import topics

    def broken(prefix: str, topic: str) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(topics, "parse", broken)
    routing._judge_text_topic.cache_clear()   # topic verdicts are cached: this one must meet the broken parser
    routed = r(GOOD_TOPIC, GOOD)
    routing._judge_text_topic.cache_clear()
    assert (routed.kind, routed.reason) == (DEAD, "bad_topic: KeyError")


topic_text = st.text(max_size=200) | st.text(alphabet="apt/hanbit0123456789+#.-_\x00", max_size=60) | st.builds(
    lambda b, rest: f"apt/hanbit/{b}/{rest}", st.text(alphabet="0123456789", max_size=6000),
    st.sampled_from(["101/status", "101/meta", "101/cmd", "101/water/reading", "", "101"]))
any_topic = topic_text | st.binary(max_size=300) | st.text(max_size=20).map(lambda t: "apt/" + t * 40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)
json_payloads = st.builds(lambda d: json.dumps(d).encode(), json_values) | st.builds(
    lambda extra: json.dumps({"device_id": "hanbit-01-101", "meter": "water", **extra}).encode(),
    st.dictionaries(st.text(max_size=10), json_values, max_size=4))
any_payload = st.binary(max_size=6000) | json_payloads | st.integers(0, 20000).map(
    lambda depth: b"[" * depth + b"]" * depth) | st.sampled_from([b"NaN", b"-Infinity", b'{"a":1,"a":2}', b""])


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(topic=any_topic, payload=any_payload, max_bytes=st.integers(1, 8192))
def test_any_topic_and_any_payload_give_a_route_or_a_dead_letter_never_an_exception(
        topic: str | bytes, payload: bytes, max_bytes: int) -> None:
    assert_well_formed(route("apt", topic, payload, max_bytes=max_bytes))


@settings(max_examples=200)
@given(payload=any_payload)
def test_any_payload_on_a_reading_topic_is_forwarded_only_as_an_object_naming_that_device(payload: bytes) -> None:
    routed = r(GOOD_TOPIC, payload, max_bytes=1 << 20)
    assert_well_formed(routed)
    if routed.kind == READING:
        data = json.loads(payload)
        assert data["device_id"] == "hanbit-01-101" and data["meter"] == "water"


@settings(max_examples=200)
@given(payload=st.binary(max_size=3000), keep=st.integers(0, 2000))
def test_dead_letters_keep_at_most_the_limit_and_say_what_was_cut(payload: bytes, keep: int) -> None:
    value, headers = dead_letter_value(payload, keep=keep)
    assert len(value) <= keep and payload.startswith(value)
    h = dict(headers)
    if len(payload) > keep:
        assert h == {"error.original_bytes": str(len(payload)).encode(),
                     "error.sha256": hashlib.sha256(payload).hexdigest().encode()}
    else:
        assert value == payload and h == {}


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


CANONICAL = Reading("hanbit-01-101", "water", 1, datetime(2024, 1, 1, tzinfo=UTC), 3600, 0.5, 10.5, "m³").to_json()


@pytest.mark.parametrize(("topic", "payload", "kind", "reason"), [
    (GOOD_TOPIC, CANONICAL, READING, ""),
    ("apt/hanbit/01/102/water/reading", CANONICAL, DEAD, "device_mismatch"),
    ("apt/hanbit/01/101/heating/reading", CANONICAL, DEAD, "meter_mismatch"),
    (GOOD_TOPIC, CANONICAL.replace("m³".encode(), b"m\xb3"), DEAD, "not_utf8"),   # canonical in form only
    (GOOD_TOPIC, CANONICAL + b" " * 9000, DEAD, "too_large"),
])
def test_a_reading_as_the_edge_writes_it_is_routed_as_the_full_check_routes_it(topic: str, payload: bytes,
                                                                                  kind: str, reason: str) -> None:
    routed = r(topic, payload)
    assert (routed.kind, routed.reason.split(":")[0] if routed.reason else "") == (kind, reason)
