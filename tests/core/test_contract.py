from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from apt_energy.core.contract import (
    MAX_AMOUNT,
    MAX_LENGTH,
    MAX_PAYLOAD_BYTES,
    Accepted,
    ContractError,
    DeviceMeta,
    DeviceStatus,
    InvalidInput,
    MeterInfo,
    Reading,
    Reason,
    Rejection,
    decode_message,
    exact,
    load_json,
    usage_month,
    validate_reading,
)

pytestmark = pytest.mark.unit

SEOUL = ZoneInfo("Asia/Seoul")
UNITS = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}


def reading(**over: object) -> Reading:
    base = dict(device_id="hanbit-01-101", meter="water", seq=7, ts=datetime(2024, 1, 1, 3, tzinfo=UTC),
                interval_s=3600, value=0.0123, total=12.5, unit="m³", life=1_700_000_000_000)
    base.update(over)
    return Reading(**base)  # type: ignore[arg-type]


def with_(**over: object) -> bytes:
    return json.dumps({**reading().to_dict(), **over}).encode()


def without(name: str) -> bytes:
    d = reading().to_dict()
    d.pop(name)
    return json.dumps(d).encode()


def test_round_trip_keeps_every_field_and_numbers_stay_json_numbers() -> None:
    r = reading()
    data = json.loads(r.to_json())
    assert isinstance(data["value"], float) and isinstance(data["seq"], int) and data["life"] == r.life
    assert data["ts"] == "2024-01-01T03:00:00Z"
    assert Reading.from_json(r.to_json()) == r


def test_a_payload_from_before_lives_reads_as_life_0() -> None:
    old = {k: v for k, v in reading().to_dict().items() if k not in ("life", "v")}
    parsed = Reading.from_json(json.dumps(old))
    assert parsed.life == 0 and parsed.v == 1 and parsed.seq == 7


def test_sub_second_timestamps_round_trip() -> None:
    r = reading(ts=datetime(2024, 1, 1, 3, 0, 0, 250_000, tzinfo=UTC))
    assert Reading.from_json(r.to_json()) == r


HOSTILE: list[tuple[bytes | str, Reason]] = [
    (b"not json", Reason.NOT_JSON),
    (b"", Reason.NOT_JSON),
    (b"[1, 2]", Reason.NOT_OBJECT),
    (b"null", Reason.NOT_OBJECT),
    (b"[" * 3000 + b"]" * 3000, Reason.TOO_DEEP),
    (b'{"a":' * 2000 + b"1" + b"}" * 2000, Reason.TOO_DEEP),
    (b'{"a":[[[[[[[[[[1]]]]]]]]]]}', Reason.TOO_DEEP),
    (b'{"a": "\xff"}', Reason.NOT_UTF8),
    ("{}".encode("utf-16"), Reason.NOT_UTF8),
    (b'{"device_id": "a", "device_id": "b"}', Reason.DUPLICATE_KEY),
    (with_().replace(b'"value": 0.0123', b'"value": NaN'), Reason.NOT_FINITE),
    (with_().replace(b'"value": 0.0123', b'"value": -Infinity'), Reason.NOT_FINITE),
    (with_().replace(b'"value": 0.0123', b'"value": 1e400'), Reason.NOT_FINITE),
    (with_(note="nul \u0000 inside"), Reason.BAD_CHARACTER),
    (with_().replace(b'"unit": "m\\u00b3"', b'"unit": "\\ud800"'), Reason.BAD_CHARACTER),
    (b'{"\\u0000": 1}', Reason.BAD_CHARACTER),
    (b" " * (MAX_PAYLOAD_BYTES + 1), Reason.TOO_LARGE),
    (b'{"n": ' + b"9" * 5000 + b"}", Reason.NOT_JSON),
    (b'{"device_id": "d"}', Reason.MISSING_FIELD),
    (without("ts"), Reason.MISSING_FIELD),
    (with_(seq="7"), Reason.WRONG_TYPE),
    (with_(seq=7.0), Reason.WRONG_TYPE),
    (with_(seq=True), Reason.WRONG_TYPE),
    (with_(value="0.1"), Reason.WRONG_TYPE),
    (with_(seq=-1), Reason.NEGATIVE),
    (with_(value=-1), Reason.NEGATIVE),
    (with_(total=-0.5), Reason.NEGATIVE),
    (with_(life=-3), Reason.NEGATIVE),
    (with_(seq=2**63), Reason.OUT_OF_RANGE),
    (with_(life=10**30), Reason.OUT_OF_RANGE),
    (with_(interval_s=0), Reason.OUT_OF_RANGE),
    (with_(interval_s=2**31), Reason.OUT_OF_RANGE),
    (with_(value=1e14), Reason.OUT_OF_RANGE),
    (with_(total=MAX_AMOUNT), Reason.OUT_OF_RANGE),
    (with_(value=0.1234567), Reason.TOO_PRECISE),
    (with_(ts="yesterday"), Reason.BAD_TS),
    (with_(ts="2024-01-01T00:00:00"), Reason.BAD_TS),
    (with_(ts="0001-01-01T00:00:00+01:00"), Reason.BAD_TS),
    (with_(ts="２０２４-01-01T00:00:00Z"), Reason.BAD_TS),
    (with_(device_id="x" * 65), Reason.TOO_LONG),
    (with_(device_id="hanbit 01"), Reason.BAD_FORMAT),
    (with_(device_id=""), Reason.BAD_FORMAT),
    (with_(meter="Water"), Reason.BAD_FORMAT),
    (with_(meter="w" * 21), Reason.TOO_LONG),
    (with_(unit="kWh" * 4), Reason.TOO_LONG),
    (with_(unit="k\tWh"), Reason.BAD_CHARACTER),
    (with_(unit="k\x85Wh"), Reason.BAD_CHARACTER),
    (with_(v=3), Reason.UNSUPPORTED_VERSION),
]


@pytest.mark.parametrize(("payload", "reason"), HOSTILE)
def test_each_bad_payload_gets_its_reason_code(payload: bytes, reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        Reading.from_json(payload)
    assert info.value.reason is reason
    assert str(info.value).split(":")[0] == reason.value
    assert isinstance(info.value, InvalidInput)
    assert validate_reading(payload) == Rejection(reason, info.value.detail)


def test_reason_text_is_short_and_one_line_even_for_hostile_values() -> None:
    rejected = validate_reading(with_(device_id="\n" * 50 + "x" * 500))
    assert isinstance(rejected, Rejection)
    assert len(str(rejected)) < 120 and "\n" not in str(rejected)


def test_string_limits_are_the_column_sizes_of_the_migrations() -> None:
    from apt_energy.config.settings import PROJECT_ROOT

    sql = "".join(p.read_text() for p in sorted((PROJECT_ROOT / "database" / "migrations").glob("*.sql")))
    assert f"device_id   VARCHAR({MAX_LENGTH['device_id']})" in sql
    assert f"meter        VARCHAR({MAX_LENGTH['meter']})" in sql
    assert f"unit     VARCHAR({MAX_LENGTH['unit']})" in sql
    assert f"firmware     VARCHAR({MAX_LENGTH['firmware']})" in sql
    assert f"complex_id      VARCHAR({MAX_LENGTH['complex']})" in sql
    assert f"state        VARCHAR({MAX_LENGTH['state']})" in sql
    assert "value        NUMERIC(20, 6)" in sql  # MAX_AMOUNT = 1e9 < 1e14


def test_the_largest_and_smallest_valid_amounts_are_accepted_exactly() -> None:
    r = Reading.from_json(with_(value=999_999_999.999999, total=0.000001))
    assert exact(r.value) == Decimal("999999999.999999") and exact(r.total) == Decimal("0.000001")


def test_units_check_the_meter_and_its_unit() -> None:
    assert Reading.from_json(reading().to_json(), units=UNITS) == reading()
    assert validate_reading(with_(meter="gas"), units=UNITS) == Rejection(Reason.UNKNOWN_METER, "gas")
    assert isinstance(r := validate_reading(with_(unit="L"), units=UNITS), Rejection)
    assert r.reason is Reason.UNIT_MISMATCH


def test_load_json_gives_jsonb_acceptable_documents() -> None:
    assert load_json(b'{"a": [1, 2.5, "x", null, true], "b": {"c": "\xec\x9c\x84"}}') == {
        "a": [1, 2.5, "x", None, True], "b": {"c": "위"}}
    with pytest.raises(ContractError, match="not_utf8"):
        load_json("\ud800")


META = DeviceMeta("hanbit-01-101", "hanbit", 1, 1, 1, (MeterInfo("water", "m³"), MeterInfo("electricity", "kWh")),
                  "wallpad-sim/1.0", 3600)


def test_meta_and_status_round_trip() -> None:
    assert DeviceMeta.from_json(META.to_json()) == META
    status = DeviceStatus("hanbit-01-101", "online", datetime(2024, 1, 1, tzinfo=UTC))
    assert DeviceStatus.from_json(status.to_json()) == status


def meta_with(**over: object) -> bytes:
    return json.dumps({**json.loads(META.to_json()), **over}).encode()


@pytest.mark.parametrize(("payload", "reason"), [
    (meta_with(firmware="f" * 65), Reason.TOO_LONG),
    (meta_with(firmware="v1\x00"), Reason.BAD_CHARACTER),
    (meta_with(interval_s=2**31), Reason.OUT_OF_RANGE),
    (meta_with(household={"complex": "H" * 40, "building": 1, "floor": 1, "unit": 1}), Reason.TOO_LONG),
    (meta_with(household={"complex": "hanbit", "building": 0, "floor": 1, "unit": 1}), Reason.OUT_OF_RANGE),
    (meta_with(household=[]), Reason.WRONG_TYPE),
    (meta_with(meters=[{"meter": "water"}]), Reason.MISSING_FIELD),
    (meta_with(meters=[{"meter": "water", "unit": "m"}] * 17), Reason.OUT_OF_RANGE),
    (meta_with(extra={"deep": [[[[[[[[1]]]]]]]]}), Reason.TOO_DEEP),
    (META.to_json().replace(b'"interval_s":3600', b'"interval_s":3600,"x":Infinity'), Reason.NOT_FINITE),
])
def test_bad_meta_gets_its_reason(payload: bytes, reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        DeviceMeta.from_json(payload)
    assert info.value.reason is reason


@pytest.mark.parametrize(("payload", "reason"), [
    (b'{"device_id": "hanbit-01-101", "state": "rebooting", "ts": "2024-01-01T00:00:00Z"}', Reason.BAD_FORMAT),
    (b'{"device_id": "hanbit-01-101", "state": "online"}', Reason.MISSING_FIELD),
    (b'{"state": "online", "ts": "2024-01-01T00:00:00Z"}', Reason.MISSING_FIELD),
])
def test_bad_status_gets_its_reason(payload: bytes, reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        DeviceStatus.from_json(payload)
    assert info.value.reason is reason


def test_decode_message_checks_topic_and_payload_agree() -> None:
    good = reading().to_json()
    accepted = decode_message("apt", "apt/hanbit/01/101/water/reading", good, units=UNITS)
    assert isinstance(accepted, Accepted) and accepted.message == reading() and accepted.topic.kind == "reading"
    meta = decode_message("apt", "apt/hanbit/01/101/meta", META.to_json())
    assert isinstance(meta, Accepted) and meta.message == META
    cmd = decode_message("apt", "apt/hanbit/01/101/cmd", b"[" * 3000)
    assert isinstance(cmd, Accepted) and cmd.message is None

    def reason(topic: str | bytes, payload: bytes, **kw: object) -> Reason:
        out = decode_message("apt", topic, payload, **kw)  # type: ignore[arg-type]
        assert isinstance(out, Rejection), out
        return out.reason

    assert reason("apt/hanbit/01/102/water/reading", good) is Reason.DEVICE_MISMATCH
    assert reason("apt/hanbit/01/101/heating/reading", good) is Reason.METER_MISMATCH
    assert reason("apt/hanbit/" + "7" * 5000 + "/101/status", good) is Reason.BAD_TOPIC
    assert reason(b"apt/\xff/01/101/status", good) is Reason.BAD_TOPIC
    assert reason("apt/hanbit/01/101/water/reading", good, max_bytes=100) is Reason.TOO_LARGE
    assert reason("apt/hanbit/01/101/status", META.to_json()) is Reason.MISSING_FIELD
    rejected = decode_message("apt", "apt/hanbit/01/101/water/reading", b"{")
    assert isinstance(rejected, Rejection) and rejected.device_id == "hanbit-01-101"


def test_a_reading_ending_at_local_midnight_on_the_first_belongs_to_the_month_before() -> None:
    end = datetime(2024, 2, 1, tzinfo=SEOUL).astimezone(UTC)  # 2024-01-31T15:00Z
    assert usage_month(end, SEOUL).isoformat() == "2024-01-01"
    assert usage_month(end + timedelta(hours=1), SEOUL).isoformat() == "2024-02-01"
    # 16:00 UTC on 31 Jan is already February in Seoul
    assert usage_month(datetime(2024, 1, 31, 16, tzinfo=UTC), SEOUL).isoformat() == "2024-02-01"


def test_exact_is_the_decimal_json_wrote() -> None:
    assert exact(0.1) + exact(0.2) == Decimal("0.3")
    assert exact(round(0.12345, 4)) == Decimal("0.1235") or exact(round(0.12345, 4)) == Decimal("0.1234")


def test_meta_meters_may_name_their_life_serial_and_since_and_old_documents_stay_valid() -> None:
    since = datetime(2024, 3, 10, 5, tzinfo=UTC)
    meta = DeviceMeta("hanbit-01-101", "hanbit", 1, 1, 1, (
        MeterInfo("water", "m³", life=1_700_000_000_123, serial="W-1", since=since), MeterInfo("electricity", "kWh")),
        "wallpad-sim/1.0", 3600)
    assert DeviceMeta.from_json(meta.to_json()) == meta
    doc = json.loads(meta.to_json())
    assert doc["meters"][0] == {"meter": "water", "unit": "m³", "life": 1_700_000_000_123, "serial": "W-1",
                                "since": "2024-03-10T05:00:00Z"}
    assert doc["meters"][1] == {"meter": "electricity", "unit": "kWh"}      # what readers have always seen


@pytest.mark.parametrize(("meter", "reason"), [
    ({"meter": "water", "unit": "m³", "life": -1}, Reason.NEGATIVE),
    ({"meter": "water", "unit": "m³", "life": "7"}, Reason.WRONG_TYPE),
    ({"meter": "water", "unit": "m³", "serial": "s" * 65}, Reason.TOO_LONG),
    ({"meter": "water", "unit": "m³", "since": "yesterday"}, Reason.BAD_TS),
])
def test_bad_meter_history_fields_get_their_reason(meter: dict[str, object], reason: Reason) -> None:
    with pytest.raises(ContractError) as info:
        DeviceMeta.from_json(meta_with(meters=[meter]))
    assert info.value.reason == reason
