"""Validation cost in the stream job: the contract's validator in a Python UDF (``parse_readings``) against
Spark's native JSON parsing (``from_json`` + casts, the earlier approach's core), same data, same run.

Rows/s of each over N cached Kafka-like rows into the no-op sink, best of R runs. The stream job's goal
is ≥ 20k readings/s end to end; the UDF must stay well above it so the PostgreSQL sink remains the limit.

    .venv/bin/python -m bench.bench_transforms --rows 200000
"""

from __future__ import annotations

import argparse
import time

from apt_energy.spark.job import build_session
from apt_energy.spark.schema import EXACT
from apt_energy.spark.transforms import parse_readings
from apt_energy.stack.jars import spark_kafka_jars
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from apt_energy import config
from bench.figure import Figure

UNITS = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}
JSON_SCHEMA = StructType([StructField(n, t) for n, t in [
    ("v", IntegerType()), ("device_id", StringType()), ("meter", StringType()), ("life", LongType()),
    ("seq", LongType()), ("ts", StringType()), ("interval_s", IntegerType()), ("value", DoubleType()),
    ("total", DoubleType()), ("unit", StringType())]])


def kafka_rows(spark: SparkSession, n: int) -> DataFrame:
    payload = F.format_string(
        '{"v":2,"device_id":"hanbit-%02d-%d01","meter":"electricity","life":1700000000000,"seq":%d,'
        '"ts":"2024-03-01T%02d:00:00Z","interval_s":3600,"value":%d.%03d,"total":%d.5,"unit":"kWh"}',
        (F.col("id") % 11 + 1).cast("int"), (F.col("id") % 20 + 1).cast("int"), F.col("id"),
        (F.col("id") % 24).cast("int"), (F.col("id") % 7).cast("int"), (F.col("id") % 997).cast("int"), F.col("id"))
    df = spark.range(n).select(payload.cast("binary").alias("value"), F.lit("apt.readings").alias("topic"),
                               (F.col("id") % 6).cast("int").alias("partition"), F.col("id").alias("offset"))
    return df.cache()


def native(df: DataFrame) -> DataFrame:
    r = F.from_json(F.col("value").cast("string"), JSON_SCHEMA).alias("r")
    parsed = df.select(r, "offset")
    return parsed.select("r.device_id", "r.meter", "r.seq", F.to_timestamp("r.ts").alias("ts"),
                         F.col("r.value").cast(EXACT), F.col("r.total").cast(EXACT),
                         F.when(F.col("r.value") < 0, F.lit("negative")).alias("reason"))


def seconds(df: DataFrame) -> float:
    began = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - began


def rates(frames: dict[str, DataFrame], n: int, runs: int) -> dict[str, float]:
    """Best rows/s of each, runs interleaved so a busy machine slows both alike."""
    best = dict.fromkeys(frames, float("inf"))
    for _ in range(runs):
        for name, df in frames.items():
            best[name] = min(best[name], seconds(df))
    return {name: n / s for name, s in best.items()}


def figures(rows: int = 200_000, runs: int = 3) -> list[Figure]:
    """The contract UDF against Spark's native JSON parsing, same rows, same run."""
    settings = config.load()
    spark = build_session(settings, jars=spark_kafka_jars(settings.cache_dir), app="bench-transforms", quiet=True)
    try:
        data = kafka_rows(spark, rows)
        assert data.count() == rows
        validated = parse_readings(data, units=UNITS, timezone="Asia/Seoul", max_future_s=3600, max_past_days=3650)
        assert validated.where("reason IS NOT NULL").count() == 0, "the generated readings must be valid"
        measured = rates({"native": native(data), "udf": validated}, rows, runs)
    finally:
        spark.stop()
    base, udf = measured["native"], measured["udf"]
    print(f"rows={rows} master={settings.spark.master}")
    print(f"native from_json: {base:,.0f} rows/s")
    print(f"contract UDF:     {udf:,.0f} rows/s  ({udf / base:.2f} × native)")
    # No ratio goal: the UDF does more than from_json (the contract's every check); it must stay
    # above the stream job's goal so that the PostgreSQL sink remains the limit.
    return [Figure("contract validation UDF (parse_readings)", udf, "rows/s", "native from_json + casts", base,
                   target=25_000.0)]


def main() -> None:
    from bench.report import Outcome, table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(table([Outcome("transforms", tuple(figures(args.rows, args.runs)))]))


if __name__ == "__main__":
    main()
