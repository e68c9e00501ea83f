"""Pure DataFrame transforms: Kafka records → validated readings and device records with a reason.

No I/O here: the job wires these to Kafka and the sink; tests run them on static DataFrames. The
stream job's readings no longer go through :func:`parse_readings`: the executors judge them with the
same contract function in the pass that stages them (``staging.PartitionStager``, one Python pass
instead of a UDF round trip plus a COPY pass); :func:`parse_readings` stays the DataFrame form of that
verdict (``bench/bench_spark.py``'s previous path, and the tests that pin both to the contract).

Validation is the contract's own (:func:`apt_energy.core.contract.validate_reading`), run in a Python UDF,
not a second implementation in Spark expressions: the checks that make hostile input safe (strict UTF-8,
duplicate keys, NaN/overflow, nesting depth, NUL and lone surrogates, VARCHAR lengths, exactness of
doubles) have no faithful Spark equivalent (``from_json`` keeps one of two duplicate keys, accepts NaN
and parses numbers its own way), and two implementations drift apart. The cost, measured by
``bench/bench_transforms.py`` (200k rows, local[2], one run on a shared 2-core machine): native
``from_json`` 229k rows/s, a no-op Python UDF 179k rows/s, this validator 27k rows/s; the same UDF with
Arrow (needs pyarrow and pandas < 3, not dependencies today) 45k rows/s. That keeps validation above the
stream job's > 10k readings/s, though it is now the job's largest CPU cost. The UDF is a plain (pickled)
one because the Arrow path pulls in pandas. A hybrid (a JVM regex accepting the exact text
``Reading.to_json`` writes, the UDF only for the rest) measured slower than the UDF alone: the regex,
repeated ``from_json`` and per-field CASE cost more than they saved. Only the clock window, which needs the
batch's ``now``, is a Spark expression, with the contract's reason texts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from apt_energy.core.contract import (
    MAX_LENGTH,
    MAX_PAYLOAD_BYTES,
    Reading,
    Rejection,
    validate_device_record,
    validate_reading,
    window_rejections,
)
from apt_energy.spark.schema import DEVICE_CHECK_SCHEMA, EXACT, VALIDATED_READING_SCHEMA
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

STAGING_COLUMNS = ("device_id", "meter", "life", "seq", "ts", "interval_s", "value", "total", "unit", "usage_month",
                   "topic", "partition", "offset", "reason", "raw", "received_ms")
DEVICE_COLUMNS = ("device_id", "kind", "state", "firmware", "interval_s", "raw", "kafka_ts", "partition", "offset",
                  "reason")

_FIELDS = tuple(f.name for f in dataclasses.fields(Reading))
_NO_READING = (None,) * len(_FIELDS)


def reading_checker(units: Mapping[str, str], max_bytes: int = MAX_PAYLOAD_BYTES) -> Callable[[Any], tuple[Any, ...]]:
    """The UDF body: payload bytes → the reading's fields and NULL, or NULLs and the reason text."""
    known = dict(units)

    def check(payload: Any) -> tuple[Any, ...]:
        out = validate_reading(payload, units=known, max_bytes=max_bytes)
        if isinstance(out, Rejection):
            return (*_NO_READING, str(out))
        return (*(getattr(out, name) for name in _FIELDS), None)

    return check


def text_of(payload: Column) -> Column:
    """Bytes as text PostgreSQL stores: invalid UTF-8 replaced, NUL (which text refuses) replaced."""
    return F.regexp_replace(F.make_valid_utf8(payload.cast("string")), r"\x00", "\ufffd")


def parse_readings(kafka: DataFrame, *, units: dict[str, str], timezone: str, max_future_s: int,
                   max_past_days: int, now: Column | None = None, max_bytes: int = MAX_PAYLOAD_BYTES) -> DataFrame:
    """Kafka rows (value, topic, partition, offset, headers) → one row per record with the parsed
    reading, its local ``usage_month`` and ``reason`` (NULL when it is good)."""
    now = now if now is not None else F.current_timestamp()
    check = F.udf(reading_checker(units, max_bytes), VALIDATED_READING_SCHEMA, useArrow=False)
    df = kafka.select(
        text_of(F.col("value")).alias("raw"), "topic", "partition", "offset", check(F.col("value")).alias("r"),
        received_ms(kafka).alias("received_ms"),
    )
    r = F.col("r")
    ts = r["ts"]
    future, old = window_rejections(max_future_s=max_future_s, max_past_days=max_past_days)
    reason = F.coalesce(
        r["reason"],
        F.when(ts > now + F.expr(f"INTERVAL {int(max_future_s)} SECONDS"), F.lit(str(future))),
        F.when(ts < now - F.expr(f"INTERVAL {int(max_past_days)} DAYS"), F.lit(str(old))),
    )
    return df.select(
        r["device_id"].alias("device_id"), r["meter"].alias("meter"), r["life"].alias("life"),
        r["seq"].alias("seq"), ts.alias("ts"), r["interval_s"].alias("interval_s"),
        r["value"].cast(EXACT).alias("value"), r["total"].cast(EXACT).alias("total"), r["unit"].alias("unit"),
        usage_month(ts, timezone).alias("usage_month"),
        "topic", "partition", "offset", reason.alias("reason"), "raw", "received_ms",
    )


def usage_month(ts: Column, timezone: str) -> Column:
    """First day of the local month of the interval's last instant (``contract.usage_month``)."""
    local = F.from_utc_timestamp(ts - F.expr("INTERVAL 1 SECOND"), timezone)
    return F.trunc(F.to_date(local), "month")


def received_ms(kafka: DataFrame) -> Column:
    """When the bridge received the MQTT message (header ``bridge.received_ms``), for freshness."""
    if "headers" not in kafka.columns:
        return F.lit(None).cast("long")
    hit = F.filter("headers", lambda h: h["key"] == F.lit("bridge.received_ms"))
    return F.when(F.size(hit) > 0, hit[0]["value"].cast("string").cast("long"))


def device_checker(max_bytes: int = MAX_PAYLOAD_BYTES) -> Callable[[Any, Any, Any], tuple[Any, ...]]:
    """The UDF body for device records: (device_id, kind, payload) → (state, firmware, interval_s, reason)."""

    def check(device_id: Any, kind: Any, payload: Any) -> tuple[Any, ...]:
        out = validate_device_record(kind or "", device_id or "", payload, max_bytes=max_bytes)
        if isinstance(out, Rejection):
            return None, None, None, str(out)
        if kind == "status":
            return out.state, None, None, None  # type: ignore[union-attr]
        return None, out.firmware, out.interval_s, None  # type: ignore[union-attr]

    return check


def parse_devices(kafka: DataFrame, *, max_bytes: int = MAX_PAYLOAD_BYTES) -> DataFrame:
    """Device topic records (status and meta, keyed ``<device>/<kind>``) → one row each
    (:data:`DEVICE_COLUMNS`), validated by the contract: ``reason`` is NULL for a good record."""
    key = text_of(F.col("key"))
    device_id = F.regexp_extract(key, r"^(.*)/(status|meta)$", 1)
    kind = F.regexp_extract(key, r"^(.*)/(status|meta)$", 2)
    check = F.udf(device_checker(max_bytes), DEVICE_CHECK_SCHEMA, useArrow=False)
    parsed = check(device_id, kind, F.col("value"))
    reason = F.when(kind == "", F.concat(F.lit("bad_topic: devices key is not <device>/<status|meta>: "),
                                         F.substring(key, 1, 64))).otherwise(parsed["reason"])
    return kafka.select(
        F.when(device_id != "", F.substring(device_id, 1, MAX_LENGTH["device_id"])).alias("device_id"),
        kind.alias("kind"), parsed["state"].alias("state"), parsed["firmware"].alias("firmware"),
        parsed["interval_s"].alias("interval_s"), text_of(F.col("value")).alias("raw"),
        F.col("timestamp").alias("kafka_ts"), "partition", "offset", reason.alias("reason"),
    )
