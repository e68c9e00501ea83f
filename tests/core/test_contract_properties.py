"""Properties over unbounded input: the contract and the topic parser are total functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from apt_energy.core import topics
from apt_energy.core.contract import (
    BIGINT_MAX,
    INT_MAX,
    MAX_AMOUNT,
    MAX_DECIMALS,
    Accepted,
    ContractError,
    DeviceMeta,
    DeviceStatus,
    InvalidInput,
    Reading,
    Rejection,
    decode_message,
    validate_reading,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=30)
# documents that look like readings, with any field possibly wrong
reading_like = st.fixed_dictionaries({}, optional={
    k: json_values for k in ("v", "device_id", "meter", "life", "seq", "ts", "interval_s", "value", "total", "unit")})
payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    reading_like.map(lambda d: json.dumps(d, allow_nan=True).encode()),
    st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(1, 3000).map(lambda n: b'{"a":' * n + b"0" + b"}" * n),
)
topic_text = st.one_of(
    st.text(max_size=80),
    st.lists(st.sampled_from(["apt", "hanbit", "07", "1203", "status", "meta", "cmd", "water", "reading", "",
                              "+", "#", "9" * 400, "٠٧", "0"]), max_size=7).map("/".join),
)
any_topic = st.one_of(topic_text, st.binary(max_size=80), topic_text.map(lambda s: s.encode("utf-8", "surrogatepass")))


@FAST
@given(payloads)
def test_any_payload_gives_a_reading_or_a_rejection_never_another_exception(payload: bytes) -> None:
    out = validate_reading(payload)
    assert isinstance(out, Reading | Rejection)
    for parse in (Reading.from_json, DeviceMeta.from_json, DeviceStatus.from_json):
        try:
            parse(payload)
        except ContractError as exc:
            assert str(exc) and len(str(exc)) < 200 and "\n" not in str(exc)


@FAST
@given(any_topic)
def test_any_topic_parses_or_is_rejected_with_a_reason(topic: str | bytes) -> None:
    try:
        parsed = topics.parse("apt", topic)
    except InvalidInput as exc:
        assert str(exc)
    else:
        assert parsed.device_id.startswith(parsed.complex_id + "-")


@FAST
@given(any_topic, payloads)
def test_any_topic_and_payload_decode_to_a_message_or_a_rejection(topic: str | bytes, payload: bytes) -> None:
    assert isinstance(decode_message("apt", topic, payload), Accepted | Rejection)


# every decimal with 6 places below MAX_AMOUNT (and the edges, which hypothesis tries first)
amounts = st.integers(0, MAX_AMOUNT * 10**MAX_DECIMALS - 1).map(lambda n: float(Decimal(n).scaleb(-MAX_DECIMALS)))
valid_readings = st.builds(
    Reading,
    device_id=st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
    meter=st.from_regex(r"[a-z][a-z0-9_]{0,19}", fullmatch=True),
    seq=st.integers(0, BIGINT_MAX),
    ts=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1),
                    timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=t.microsecond)),
    interval_s=st.integers(1, INT_MAX),
    value=amounts,
    total=amounts,
    unit=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=10),
    life=st.integers(0, BIGINT_MAX),
)


@FAST
@given(valid_readings)
def test_valid_readings_round_trip(reading: Reading) -> None:
    assert Reading.from_json(reading.to_json()) == reading
    assert validate_reading(reading.to_json()) == reading


@FAST
@given(valid_readings, st.integers(-(10**30), 10**30), st.floats())
def test_a_reading_with_any_number_in_a_numeric_field_is_accepted_only_if_postgres_could_store_it(
        reading: Reading, big: int, number: float) -> None:
    for name, x in (("seq", big), ("life", big), ("interval_s", big), ("value", number), ("total", number)):
        out = validate_reading(json.dumps({**reading.to_dict(), name: x}, allow_nan=True))
        if isinstance(out, Reading):
            stored = getattr(out, name)
            if name in ("seq", "life"):
                assert 0 <= stored <= BIGINT_MAX
            elif name == "interval_s":
                assert 0 < stored <= INT_MAX
            else:
                assert 0 <= stored < MAX_AMOUNT and round(stored, MAX_DECIMALS) == stored


def test_timestamps_keep_their_instant_across_zones() -> None:
    r = Reading("d", "water", 1, datetime(2024, 1, 1, tzinfo=UTC) + timedelta(microseconds=5), 60, 1.0, 1.0, "m³")
    assert Reading.from_json(r.to_json()).ts == r.ts


def outcome(parse: Callable[[], Reading]) -> Reading | str:
    try:
        return parse()
    except ContractError as exc:
        return str(exc)


mutated = st.builds(lambda r, over: {**r.to_dict(), **over}, valid_readings,
                    st.dictionaries(st.sampled_from(["v", "device_id", "meter", "life", "seq", "ts", "interval_s",
                                                     "value", "total", "unit"]), json_values, max_size=2))


@FAST
@given(st.one_of(reading_like, mutated), st.sampled_from([None, {"water": "m³"}]))
def test_the_fast_path_decides_exactly_as_the_field_by_field_checks(data: dict[str, object],
                                                                    units: dict[str, str] | None) -> None:
    assert outcome(lambda: Reading.from_dict(data, units=units)) == outcome(
        lambda: Reading._explain(data, units))


@given(seq=st.integers(0, 2**40), life=st.integers(0, 2**45), value=st.floats(allow_nan=False, allow_infinity=False),
       total=st.floats(allow_nan=False, allow_infinity=False),
       ts=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
       unit=st.sampled_from(["kWh", "m³", 'a"b\\c']))
def test_reading_to_json_is_the_generic_encoders_json_byte_for_byte(seq: int, life: int, value: float, total: float,
                                                                   ts: datetime, unit: str) -> None:
    reading = Reading("hanbit-01-101", "water", seq, ts, 3600, value, total, unit, life=life)
    assert reading.to_json() == reading._generic_json()


def test_reading_to_json_falls_back_to_the_generic_encoder_for_odd_numbers() -> None:
    for value in (1, float("nan"), np.float64(0.1)):
        reading = Reading("hanbit-01-101", "water", 1, datetime(2024, 7, 1, tzinfo=UTC), 3600, value, 0.5, "m³")
        try:
            expected = reading._generic_json()
        except (TypeError, ValueError):
            continue
        assert reading.to_json() == expected
