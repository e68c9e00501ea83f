from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from apt_energy.spark.schema import READING_SCHEMA, REQUIRED
from apt_energy.spark.transforms import parse_devices, parse_readings
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from apt_energy.contract import Reading

pytestmark = pytest.mark.spark

UNITS = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}
NOW = datetime(2024, 6, 1, tzinfo=UTC)
GOOD = Reading("hanbit-01-101", "water", 3, datetime(2024, 1, 31, 15, tzinfo=UTC), 3600, 0.0123, 12.5, "m³")


def parse(spark: SparkSession, payloads: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    df = spark.createDataFrame([(p, "readings", 0, i) for i, p in enumerate(payloads)],
                               "value binary, topic string, partition int, offset long")
    out = parse_readings(df, units=UNITS, timezone="Asia/Seoul", max_future_s=3600, max_past_days=3650,
                         now=F.lit(NOW).cast("timestamp"))
    return [r.asDict() for r in out.orderBy("offset").collect()]


def test_schema_is_derived_from_the_message_contract() -> None:
    assert [f.name for f in READING_SCHEMA.fields] == [f.name for f in dataclasses.fields(Reading)]
    assert set(REQUIRED) == set(GOOD.to_dict()) - {"v"}


def test_a_good_reading_parses_exactly_into_its_local_month(local_spark: SparkSession) -> None:
    [row] = parse(local_spark, [GOOD.to_json()])
    assert row["reason"] is None
    assert row["value"] == Decimal("0.012300") and row["total"] == Decimal("12.500000")
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


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not a JSON object"),
    (b"[1, 2]", "not a JSON object"),
    (b"null", "not a JSON object"),
    (without("seq"), "missing field seq"),
    (without("ts"), "missing field ts"),
    (with_(seq="three"), "seq has the wrong type"),
    (with_(value="0.1"), "value has the wrong type"),
    (with_(ts="yesterday"), "ts is not an ISO-8601 time with a zone"),
    (with_(ts="2024-01-01T00:00:00"), "ts is not an ISO-8601 time with a zone"),
    (GOOD.to_json().replace(b'"value":0.0123', b'"value":NaN'), "value is not finite"),
    (GOOD.to_json().replace(b'"value":0.0123', b'"value":Infinity'), "value is not finite"),
    (with_(value=-0.5), "negative consumption"),
    (with_(seq=-1), "negative seq"),
    (with_(value=0.1234567), "value has more than 6 decimals"),
    (with_(meter="gas"), "unknown meter gas"),
    (with_(unit="L"), "unit L is not the meter's unit"),
    (with_(ts="2024-06-01T02:00:01Z"), "ts is in the future"),
    (with_(ts="2010-01-01T00:00:00Z"), "ts is too far in the past"),
])
def test_each_bad_input_class_gets_its_reason(local_spark: SparkSession, payload: bytes, reason: str) -> None:
    rows = parse(local_spark, [GOOD.to_json(), payload])
    assert rows[0]["reason"] is None
    assert rows[1]["reason"] == reason
    assert rows[1]["raw"] == payload.decode(errors="replace")


def test_devices_are_split_by_key(local_spark: SparkSession) -> None:
    df = local_spark.createDataFrame(
        [(b"hanbit-01-101/status", b'{"device_id":"hanbit-01-101","state":"online"}', datetime(2024, 1, 1), 0, 1),
         (b"hanbit-01-101/meta", b'{"device_id":"hanbit-01-101","firmware":"x","interval_s":3600}',
          datetime(2024, 1, 1), 0, 2)],
        "key binary, value binary, timestamp timestamp, partition int, offset long")
    rows = {r["kind"]: r for r in parse_devices(df).collect()}
    assert rows["status"]["state"] == "online" and rows["meta"]["firmware"] == "x"
    assert rows["meta"]["interval_s"] == 3600 and rows["status"]["device_id"] == "hanbit-01-101"
