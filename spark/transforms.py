"""Pure DataFrame transforms: Kafka records → validated readings with a quarantine reason.

No I/O here: the job wires these to Kafka and the sink; tests run them on static DataFrames.
"""

from __future__ import annotations

from apt_energy.spark.schema import DEVICE_SCHEMA, EXACT, READING_SCHEMA, REQUIRED
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

TS_PATTERN = "yyyy-MM-dd'T'HH:mm:ss[.SSS]XXX"

STAGING_COLUMNS = ("device_id", "meter", "seq", "ts", "interval_s", "value", "total", "unit", "usage_month",
                   "topic", "partition", "offset", "reason", "raw", "received_ms")


def first_reason(checks: list[tuple[Column, str | Column]]) -> Column:
    """The first failing check's reason, or NULL when every check passes."""
    expr: Column | None = None
    for failed, reason in reversed(checks):
        value = reason if isinstance(reason, Column) else F.lit(reason)
        expr = F.when(failed, value) if expr is None else F.when(failed, value).otherwise(expr)
    assert expr is not None
    return expr


def parse_readings(kafka: DataFrame, *, units: dict[str, str], timezone: str, max_future_s: int,
                   max_past_days: int, now: Column | None = None) -> DataFrame:
    """Kafka rows (value, topic, partition, offset, headers) → one row per record with the parsed
    reading, its local ``usage_month`` and ``reason`` (NULL when it is good)."""
    now = now if now is not None else F.current_timestamp()
    raw = F.col("value").cast("string")
    df = kafka.select(
        raw.alias("raw"), "topic", "partition", "offset",
        F.from_json(raw, READING_SCHEMA, {"allowNonNumericNumbers": "true"}).alias("r"),
        received_ms(kafka).alias("received_ms"),
    )
    r = F.col("r")
    ts = F.to_timestamp(r["ts"], TS_PATTERN)
    known = F.create_map(*[x for m, u in units.items() for x in (F.lit(m), F.lit(u))])
    # from_json tolerates NaN/Infinity (so they can be named below) where get_json_object gives up;
    # a field counts as missing only if neither parser found it. get_json_object re-parses the text,
    # so it runs only for records from_json could not fill (CASE WHEN evaluates lazily).
    nothing_parsed = F.greatest(*[r[n].isNotNull() for n in REQUIRED]) == F.lit(False)
    checks: list[tuple[Column, str | Column]] = [
        (~F.coalesce(F.trim("raw").startswith("{"), F.lit(False))
         | F.when(nothing_parsed, F.get_json_object("raw", "$").isNull()).otherwise(F.lit(False)),
         "not a JSON object"),
    ]
    for name in REQUIRED:
        absent = F.when(r[name].isNull(), F.get_json_object("raw", f"$.{name}").isNull()).otherwise(F.lit(False))
        checks.append((absent, f"missing field {name}"))
        checks.append((r[name].isNull(), f"{name} has the wrong type"))
    checks += [
        (ts.isNull(), "ts is not an ISO-8601 time with a zone"),
        (F.isnan(r["value"]) | (F.abs(r["value"]) == float("inf")), "value is not finite"),
        (F.isnan(r["total"]) | (F.abs(r["total"]) == float("inf")), "total is not finite"),
        (r["value"] < 0, "negative consumption"),
        (r["total"] < 0, "negative meter total"),
        (r["seq"] < 0, "negative seq"),
        (r["interval_s"] <= 0, "interval_s is not positive"),
        (F.abs(r["value"] * 1e6 - F.round(r["value"] * 1e6)) > 1e-3, "value has more than 6 decimals"),
        (known[r["meter"]].isNull(), F.concat(F.lit("unknown meter "), F.substring(r["meter"], 1, 40))),
        (known[r["meter"]] != r["unit"], F.concat(F.lit("unit "), F.substring(r["unit"], 1, 20),
                                                   F.lit(" is not the meter's unit"))),
        (ts > now + F.expr(f"INTERVAL {int(max_future_s)} SECONDS"), "ts is in the future"),
        (ts < now - F.expr(f"INTERVAL {int(max_past_days)} DAYS"), "ts is too far in the past"),
    ]
    return df.select(
        r["device_id"].alias("device_id"), r["meter"].alias("meter"), r["seq"].alias("seq"), ts.alias("ts"),
        r["interval_s"].alias("interval_s"), r["value"].cast(EXACT).alias("value"),
        r["total"].cast(EXACT).alias("total"), r["unit"].alias("unit"),
        usage_month(ts, timezone).alias("usage_month"),
        "topic", "partition", "offset", first_reason(checks).alias("reason"), "raw", "received_ms",
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


def parse_devices(kafka: DataFrame) -> DataFrame:
    """Device topic records (status and meta, keyed ``<device>/<kind>``) → one row each."""
    raw = F.col("value").cast("string")
    key = F.col("key").cast("string")
    parsed = F.from_json(raw, DEVICE_SCHEMA)
    return kafka.select(
        F.regexp_extract(key, r"^(.*)/(status|meta)$", 1).alias("device_id"),
        F.regexp_extract(key, r"^(.*)/(status|meta)$", 2).alias("kind"),
        parsed["state"].alias("state"), parsed["firmware"].alias("firmware"),
        parsed["interval_s"].alias("interval_s"), raw.alias("raw"), F.col("timestamp").alias("kafka_ts"),
        "partition", "offset",
    ).where(F.col("device_id") != "")
