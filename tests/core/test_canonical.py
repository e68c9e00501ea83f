"""The canonical reader accepts only what the contract's validator accepts, with the same fields, and
takes the path for the readings our gateways actually write."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from apt_energy.core.canonical import CanonicalReader, instant, names
from apt_energy.core.contract import BIGINT_MAX, INT_MAX, ContractError, Reading, exact, load_json, validate_reading
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.core.test_contract_properties import amounts, payloads, valid_readings

pytestmark = pytest.mark.unit

UNITS = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}
READER = CanonicalReader(UNITS)
GOOD = Reading("hanbit-01-101", "water", 3, datetime(2024, 1, 31, 15, tzinfo=UTC), 3600, 0.0123, 12.5, "m³", life=7)
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# readings of the known meters, as the edge builds them
fleet_readings = st.builds(
    Reading, device_id=st.from_regex(r"[a-z]{1,8}-[0-9]{2}-[0-9]{3,4}", fullmatch=True),
    meter=st.sampled_from(sorted(UNITS)), seq=st.integers(0, BIGINT_MAX),
    ts=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    interval_s=st.integers(1, INT_MAX), value=amounts, total=amounts, unit=st.just(""),
    life=st.integers(0, BIGINT_MAX)).map(lambda r: Reading(r.device_id, r.meter, r.seq, r.ts, r.interval_s,
                                                           r.value, r.total, UNITS[r.meter], r.life))


def mutate(payload: bytes, at: int, byte: int, how: str) -> bytes:
    i = at % (len(payload) + 1)
    if how == "replace":
        return payload[:i] + bytes([byte]) + payload[i + 1:]
    if how == "insert":
        return payload[:i] + bytes([byte]) + payload[i:]
    return payload[:i] + payload[i + 1:]


mutated = st.builds(mutate, st.one_of(fleet_readings, valid_readings).map(Reading.to_json),
                    st.integers(0, 400), st.integers(0, 255), st.sampled_from(["replace", "insert", "delete"]))


def renumber(reading: Reading, field: str, text: str) -> bytes:
    data = reading.to_dict()
    return reading.to_json().replace(b'"%s":%s' % (field.encode(), repr(data[field]).encode()),
                                     b'"%s":%s' % (field.encode(), text.encode()), 1)


# a numeric field written as any number-like text: leading zeros, huge, signed, exponents, bare dots
renumbered = st.builds(renumber, fleet_readings, st.sampled_from(["life", "seq", "interval_s", "value", "total"]),
                       st.from_regex(r"-?[0-9]{0,21}(\.[0-9]{0,8})?([eE][+-]?[0-9]{1,3})?", fullmatch=True))


def assert_same_as_validator(payload: bytes) -> None:
    fields = READER.read(payload)
    if fields is None:
        return
    reading = validate_reading(payload, units=UNITS)
    assert isinstance(reading, Reading), (payload, reading)
    assert (fields.device_id.decode(), fields.meter.decode(), int(fields.life), int(fields.seq),
            instant(fields.ts), int(fields.interval_s), fields.unit.decode()) == (
        reading.device_id, reading.meter, reading.life, reading.seq, reading.ts, reading.interval_s, reading.unit)
    assert (Decimal(fields.value.decode()), Decimal(fields.total.decode())) == (exact(reading.value),
                                                                                exact(reading.total))


@MANY
@given(st.one_of(mutated, renumbered, payloads, fleet_readings.map(Reading.to_json)))
@example(GOOD.to_json().replace(b'"seq":3', b'"seq":%d' % (BIGINT_MAX + 1)))
@example(GOOD.to_json().replace(b'"life":7', b'"life":9999999999999999999'))
@example(GOOD.to_json().replace(b'"interval_s":3600', b'"interval_s":%d' % (INT_MAX + 1)))
@example(GOOD.to_json().replace(b"2024-01-31", b"2024-02-30"))
@example(GOOD.to_json().replace(b"12.5", b"012.5"))
@example(GOOD.to_json().replace(b"12.5", b"1000000000.5"))
@example(GOOD.to_json().replace(b'"unit":"m\xc2\xb3"', b'"unit":"kWh"'))
def test_whatever_it_accepts_the_validator_accepts_with_the_same_fields(payload: bytes) -> None:
    assert_same_as_validator(payload)


# any unit, even bytes that are not UTF-8: the bridge's names() reads readings of every meter
odd_units = st.builds(lambda r, unit: r.to_json().replace(b'"unit":"%s"' % r.unit.encode(), b'"unit":"%s"' % unit),
                      fleet_readings, st.binary(min_size=1, max_size=12))


@MANY
@given(st.one_of(mutated, renumbered, odd_units, payloads, fleet_readings.map(Reading.to_json)),
       st.sampled_from([64, 200, 4096]))
def test_the_names_it_reads_are_those_load_json_reads(payload: bytes, max_bytes: int) -> None:
    named = names(payload, max_bytes=max_bytes)
    if named is None:
        return
    try:
        data = load_json(payload, max_bytes=max_bytes)
    except ContractError as exc:
        raise AssertionError(f"names() read {named} where load_json refuses: {exc}") from None
    assert (data["device_id"].encode(), data["meter"].encode()) == named


def test_names_reads_a_reading_of_any_meter_and_unit() -> None:
    odd = Reading("hanbit-01-101", "gas", 1, GOOD.ts, 3600, 1.5, 1.5, "m³/h").to_json()
    assert names(odd) == (b"hanbit-01-101", b"gas")
    assert names(odd.replace("m³".encode(), b"m\xb3")) is None          # the unit is not UTF-8
    assert names(odd, max_bytes=len(odd) - 1) is None


@MANY
@given(fleet_readings)
def test_the_readings_gateways_write_take_the_canonical_path(reading: Reading) -> None:
    text = repr(reading.value) + repr(reading.total)
    if "e" not in text:   # repr writes 1e-05: that one rare form is left to the validator
        assert READER.read(reading.to_json()) is not None


@pytest.mark.parametrize("payload", [
    GOOD.to_json().replace(b'"seq":3', b'"seq":%d' % (BIGINT_MAX + 1)),
    GOOD.to_json().replace(b'"interval_s":3600', b'"interval_s":%d' % (INT_MAX + 1)),
    GOOD.to_json().replace(b"2024-01-31", b"2024-02-30"),                   # no such day
    GOOD.to_json().replace(b'"water"', b'"gas"'),                          # not a known meter
    GOOD.to_json().replace(b'"unit":"m\xc2\xb3"', b'"unit":"kWh"'),        # not the meter's unit
    GOOD.to_json().replace(b",", b", "),                                   # valid JSON, not canonical
    GOOD.to_json().replace(b'"v":2', b'"v":1'),
    GOOD.to_json().replace(b"12.5", b"1.25e1"),
    GOOD.to_json().replace(b"12.5", b"12.5000001"),                        # 7 decimals
    GOOD.to_json().replace(b"hanbit", b"h\\u0061nbit"),                   # an escape
    GOOD.to_json() + b" ",
])
def test_anything_else_goes_to_the_validator(payload: bytes) -> None:
    assert READER.read(payload) is None


def test_a_payload_over_the_size_cap_goes_to_the_validator() -> None:
    assert CanonicalReader(UNITS, max_bytes=50).read(GOOD.to_json()) is None
    assert READER.read(GOOD.to_json()) is not None


def test_a_configured_unit_the_contract_refuses_never_takes_the_path() -> None:
    reader = CanonicalReader({"water": "m\u0085", "heating": "x" * 11})   # a C1 control; too long
    for meter, unit in (("water", "m\u0085"), ("heating", "x" * 11)):
        payload = Reading("hanbit-01-101", meter, 1, GOOD.ts, 3600, 1.5, 1.5, unit).to_json()
        assert reader.read(payload) is None
