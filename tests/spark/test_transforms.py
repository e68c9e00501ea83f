from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from apt_energy.core.contract import DeviceMeta, DeviceStatus, MeterInfo, Reading, exact, validate_reading
from apt_energy.spark.schema import EXACT, READING_SCHEMA, VALIDATED_READING_SCHEMA
from apt_energy.spark.transforms import DEVICE_COLUMNS, STAGING_COLUMNS, parse_devices, parse_readings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, TimestampType

pytestmark = pytest.mark.spark

UNITS = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}
NOW = datetime(2024, 6, 1, tzinfo=UTC)
GOOD = Reading("hanbit-01-101", "water", 3, datetime(2024, 1, 31, 15, tzinfo=UTC), 3600, 0.0123, 12.5, "m³",
               life=1_700_000_000_000)


def parse(spark: SparkSession, payloads: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    df = spark.createDataFrame([(p, "readings", 0, i) for i, p in enumerate(payloads)],
                               "value binary, topic string, partition int, offset long")
    out = parse_readings(df, units=UNITS, timezone="Asia/Seoul", max_future_s=3600, max_past_days=3650,
                         now=F.lit(NOW).cast("timestamp"))
    return [r.asDict() for r in out.orderBy("offset").collect()]


def test_schema_is_derived_from_the_message_contract() -> None:
    assert [f.name for f in READING_SCHEMA.fields] == [f.name for f in dataclasses.fields(Reading)]
    types = {f.name: f.dataType for f in READING_SCHEMA.fields}
    assert types["seq"] == types["life"] == LongType() and types["interval_s"] == IntegerType()  # BIGINT, INTEGER
    assert types["ts"] == TimestampType() and types["device_id"] == StringType()
    assert [f.name for f in VALIDATED_READING_SCHEMA.fields] == [*types, "reason"]
    assert set(GOOD.to_dict()) == set(types)
    staged = {c for c in STAGING_COLUMNS} - {"usage_month", "topic", "partition", "offset", "reason", "raw",
                                             "received_ms"}
    assert staged == set(types) - {"v"}   # every field of the contract reaches the sink
    assert EXACT.scale == 6


def test_a_good_reading_parses_exactly_into_its_local_month(local_spark: SparkSession) -> None:
    [row] = parse(local_spark, [GOOD.to_json()])
    assert row["reason"] is None
    assert row["value"] == Decimal("0.012300") and row["total"] == Decimal("12.500000")
    assert (row["life"], row["seq"], row["device_id"]) == (GOOD.life, 3, GOOD.device_id)
    assert list(row) == list(STAGING_COLUMNS)
    # ends at 2024-02-01 00:00 KST: the interval belongs to January
    assert row["usage_month"].isoformat() == "2024-01-01"
    later = dataclasses.replace(GOOD, ts=GOOD.ts + timedelta(hours=1))
    assert parse(local_spark, [later.to_json()])[0]["usage_month"].isoformat() == "2024-02-01"


def with_(**over: object) -> bytes:
    return json.dumps({**GOOD.to_dict(), **over}).encode()


def without(field: str) -> bytes:
    d = GOOD.to_dict()
    d.pop(field)
    return json.dumps(d).encode()


HOSTILE = [
    b"{not json", b"[1, 2]", b"null", b"", without("seq"), without("ts"), with_(seq="three"), with_(value="0.1"),
    with_(ts="yesterday"), with_(ts="2024-01-01T00:00:00"),
    GOOD.to_json().replace(b'"value":0.0123', b'"value":NaN'),
    GOOD.to_json().replace(b'"value":0.0123', b'"value":Infinity'),
    GOOD.to_json().replace(b'"value":0.0123', b'"value":1e400'),
    with_(value=-0.5), with_(seq=-1), with_(value=0.1234567), with_(meter="gas"), with_(unit="L"),
    with_(value=1e14), with_(seq=2**63), with_(interval_s=2**31), with_(life=-1), with_(device_id="d" * 65),
    with_(unit="m\u0000"), with_(firmware_note="\ud800"), GOOD.to_json()[:-1] + b',"seq":4}',
    b"[" * 3000 + b"]" * 3000, b'{"a":' * 2000 + b"1" + b"}" * 2000, b"\xff\xfe{}", b" " * 20_000,
]


def test_the_stream_job_rejects_exactly_what_the_contract_rejects_with_the_same_reason(
        local_spark: SparkSession) -> None:
    rows = parse(local_spark, [GOOD.to_json(), *HOSTILE])
    assert rows[0]["reason"] is None
    for payload, row in zip(HOSTILE, rows[1:], strict=True):
        expected = validate_reading(payload, units=UNITS)
        assert row["reason"] == str(expected), payload[:80]
        assert row["device_id"] is None and row["value"] is None
        assert row["raw"] == payload.decode(errors="replace").replace("\x00", "\ufffd")


PLAIN = GOOD.to_json()
EDGES = [
    PLAIN, PLAIN.replace(b'"v":2', b'"v":1'), PLAIN + b"\n", PLAIN + "\u2028".encode(),
    PLAIN.replace(b"2024-01-31", b"2024-02-30"), PLAIN.replace(b"2024-01-31", b"2024-02-29"),
    PLAIN.replace(b'"unit":"m\xc2\xb3"', b'"unit":"L"'), PLAIN.replace(b'"water"', b'"gas"'),
    PLAIN.replace(b'"unit":"m\xc2\xb3"', b'"unit":"m\xff"'),
    PLAIN.replace(b'"value":0.0123', b'"value":999999999.999999'),
    PLAIN.replace(b'"value":0.0123', b'"value":0.0000001'), PLAIN.replace(b'"value":0.0123', b'"value":7'),
    PLAIN.replace(b'"value":0.0123', b'"value":1e-05'), PLAIN.replace(b'"seq":3', b'"seq":999999999999999999'),
    PLAIN.replace(b'"ts":"2024-01-31T15:00:00Z"', b'"ts":"2024-01-31T15:00:00.5Z"'),
    PLAIN.replace(b'"ts":"2024-01-31T15:00:00Z"', b'"ts":"2024-01-31T15:00:00+00:00"'),
    PLAIN.replace(b'"device_id":"hanbit-01-101"', b'"device_id":"hanbit-01-101","device_id":"x"'),
]


def test_good_and_nearly_good_readings_get_the_validators_verdict_and_values(local_spark: SparkSession) -> None:
    rows = parse(local_spark, EDGES)
    for payload, row in zip(EDGES, rows, strict=True):
        expected = validate_reading(payload, units=UNITS)
        if isinstance(expected, Reading):
            assert row["reason"] is None, (payload, row["reason"])
            assert (row["device_id"], row["meter"], row["life"], row["seq"], row["unit"]) == (
                expected.device_id, expected.meter, expected.life, expected.seq, expected.unit)
            assert row["value"] == exact(expected.value) and row["total"] == exact(expected.total)
            assert row["ts"].replace(tzinfo=UTC) == expected.ts
        else:
            assert row["reason"] == str(expected), payload


@pytest.mark.parametrize(("ts", "reason"), [
    ("2024-06-01T02:00:01Z", "ts_in_future: more than 3600s ahead"),
    ("2010-01-01T00:00:00Z", "ts_too_old: more than 3650 days old"),
])
def test_readings_outside_the_clock_window_get_the_contract_reason(local_spark: SparkSession, ts: str,
                                                                   reason: str) -> None:
    rows = parse(local_spark, [with_(ts=ts)])
    assert rows[0]["reason"] == reason


def test_the_largest_amount_is_stored_exactly(local_spark: SparkSession) -> None:
    [row] = parse(local_spark, [with_(value=999_999_999.999999, total=0.000001)])
    assert row["reason"] is None
    assert row["value"] == Decimal("999999999.999999") and row["total"] == Decimal("0.000001")


META = DeviceMeta("hanbit-01-101", "hanbit", 1, 1, 1, (MeterInfo("water", "m³"),), "x", 3600)
STATUS = DeviceStatus("hanbit-01-101", "online", datetime(2024, 1, 1, tzinfo=UTC))


def devices(spark: SparkSession, records: list[tuple[bytes, bytes]]) -> list[dict]:  # type: ignore[type-arg]
    df = spark.createDataFrame([(k, v, datetime(2024, 1, 1), 0, i) for i, (k, v) in enumerate(records)],
                               "key binary, value binary, timestamp timestamp, partition int, offset long")
    out = parse_devices(df)
    assert tuple(out.columns) == DEVICE_COLUMNS
    return [r.asDict() for r in out.orderBy("offset").collect()]


def test_devices_are_split_by_key_and_validated_by_the_contract(local_spark: SparkSession) -> None:
    meta = json.loads(META.to_json())
    rows = devices(local_spark, [
        (b"hanbit-01-101/status", STATUS.to_json()),
        (b"hanbit-01-101/meta", META.to_json()),
        (b"hanbit-01-101/meta", json.dumps({**meta, "firmware": "f" * 65}).encode()),
        (b"hanbit-01-101/meta", META.to_json().replace(b'"interval_s":3600', b'"interval_s":NaN')),
        (b"hanbit-01-101/status", b'{"device_id":"hanbit-01-101","state":"rebooting","ts":"2024-01-01T00:00:00Z"}'),
        (b"hanbit-01-102/status", STATUS.to_json()),
        (b"x" * 500 + b"/status", STATUS.to_json()),
        (b"garbage", STATUS.to_json()),
    ])
    assert rows[0]["state"] == "online" and rows[0]["reason"] is None and rows[0]["device_id"] == "hanbit-01-101"
    assert rows[1]["firmware"] == "x" and rows[1]["interval_s"] == 3600 and rows[1]["reason"] is None
    reasons = [r["reason"].split(":")[0] for r in rows[2:]]
    assert reasons == ["too_long", "not_finite", "bad_format", "device_mismatch", "device_mismatch", "bad_topic"]
    assert len(rows[6]["device_id"]) == 64 and rows[7]["device_id"] is None
