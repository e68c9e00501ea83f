"""Stream job: sustained readings/s into PostgreSQL with exact results, freshness at a 1 s trigger, and
the ratios against the previous write path measured in the same run on the same data.

* sustained: N readings waiting in Kafka; rate = rows / wall time from the end of the first batch
  (JVM warm) to the end of the last, then the database is checked against what was produced. Run
  four times on the same topic, A-B-B-A, each into a fresh database: the executor path (each partition judged and
  COPYed into ``reading_staging`` in one Arrow pass, one merge transaction per batch) and the previous
  collect() path (Python UDF validation, every row through the driver, COPY from there), kept here as
  the same-run baseline. Both paths run once over the whole topic before, untimed, into scratch
  databases (JIT, Python workers);
* freshness: readings produced at a steady rate into a fresh topic; each one's delay from produce() to
  the commit of the batch that stored it; p50/p95, for both paths;
* original design: a Spark ``foreach`` writer opening one connection and running one INSERT per row,
  over the first readings of the same topic.
Sustained phases run in batches of ``--trigger-cap`` readings (50k; the job ships with 200k). Goals
(issue 15): ≥ 25k readings/s sustained, ≥ 2 × the collect() path, p95 ≤ 2 s at 5k/s. The machine's
load average is printed: other processes share its cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from apt_energy.config import Settings
from apt_energy.core.contract import Reading, exact
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect, conninfo, migrate, roles, seed
from apt_energy.database.roles import harden_database
from apt_energy.spark.job import StreamJob, build_session, sink_options, with_retries
from apt_energy.spark.sink import BatchResult, PostgresSink, StagedReading
from apt_energy.spark.staging import BatchKey
from apt_energy.spark.transforms import parse_readings
from apt_energy.stack import NativeStack
from apt_energy.stack.jars import spark_kafka_jars
from apt_energy.stack.kafka import KafkaAdmin, ensure_acls
from confluent_kafka import Producer
from psycopg import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from bench.common import percentile, report, stack_settings
from bench.figure import Figure
from bench.previous_merge import PreviousMergeSink, previous_schema


def readings(settings: Settings, n: int, start: datetime, seq0: int = 0) -> list[Reading]:
    households = settings.complex.households()
    units = {k: e.unit for k, e in settings.energy.items()}
    out = []
    per = len(households) * len(units)
    registers: dict[tuple[str, str], int] = {}   # in 1/4000 units: each register steps by exactly its value
    for i in range(n):
        h = households[(i // len(units)) % len(households)]
        meter = list(units)[i % len(units)]
        step = seq0 + i // per
        units_4000 = 200 + i * 7919 % 1000
        total = registers[(h.device_id, meter)] = registers.get((h.device_id, meter), 0) + units_4000
        end = start + timedelta(hours=step + 1)
        out.append(Reading(h.device_id, meter, step, end, 3600, units_4000 / 4000, total / 4000, units[meter]))
    return out


def produce(settings: Settings, batch: list[Reading], *, rate: float = 0.0,
            sent: dict[Any, float] | None = None) -> None:
    p = Producer(KafkaClient.from_settings(settings, "admin").config(**{"linger.ms": 5}))
    began = time.monotonic()
    for i, r in enumerate(batch):
        if sent is not None:
            sent[(r.device_id, r.meter, r.seq)] = time.time()
        p.produce(settings.kafka.readings_topic, key=r.device_id.encode(), value=r.to_json())
        if i % 1000 == 0:
            p.poll(0)
        if rate:
            ahead = began + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    p.flush(60)


class TimedSink(PostgresSink):
    """Records when each batch committed, and which readings it held, to measure freshness."""

    def __init__(self, settings: Settings) -> None:
        dsn = conninfo(settings)
        super().__init__(lambda: psycopg.connect(dsn), options=sink_options(settings))
        self.commits: list[tuple[float, list[tuple[str, str, int]]]] = []

    def merge(self, key: BatchKey, *, staged: int) -> BatchResult | None:
        conn = self.connection()
        with conn.transaction():
            keys = [(d, m, int(q)) for d, m, q in conn.execute(
                "SELECT device_id, meter, seq FROM reading_staging WHERE stream_id = %s AND batch_id = %s "
                "AND reason IS NULL", (key.stream_id, key.batch_id)).fetchall()]
        result = super().merge(key, staged=staged)
        if result is not None:
            self.commits.append((time.time(), keys))
        return result

    def write_readings(self, batch_id: int, rows: Any) -> BatchResult:
        keys = [(r[0], r[1], int(r[3])) for r in rows if r[13] is None]
        result = super().write_readings(batch_id, rows)
        self.commits.append((time.time(), keys))
        return result


class CollectJob(StreamJob):
    """The previous write path, kept as the same-run baseline: validation in a row-at-a-time Python UDF
    (``transforms.parse_readings``), each batch collect()ed to the driver, every row turned into a
    tuple there and COPYed into a temp table, then the same SQL."""

    def _readings_output(self, kafka: DataFrame) -> DataFrame:
        s = self.settings
        parsed = parse_readings(kafka, units={k: e.unit for k, e in s.energy.items()}, timezone=s.complex.timezone,
                                max_future_s=s.spark.max_future_s, max_past_days=s.spark.max_past_days)
        return (parsed.withColumn("life", F.coalesce(F.col("life").cast("long"), F.lit(0).cast("long")))
                .withColumn("ts", F.date_format("ts", "yyyy-MM-dd'T'HH:mm:ssXXX"))
                .select(*StagedReading._fields))

    def _readings_batch(self, df: Any, batch_id: int) -> None:
        began = time.monotonic()
        rows = [tuple(r) for r in df.collect()]
        self.stats.staging_s += time.monotonic() - began
        if rows:
            self._count(with_retries(lambda: self.sink.write_readings(batch_id, rows), what=f"batch {batch_id}",
                                     stop=self.stop_event))


class PreviousMergeJob(StreamJob):
    """The executor path with the merge as it was before measurement identity (bench/previous_merge.py):
    the same-run baseline of what the interval key and the register check cost."""

    def __init__(self, settings: Settings, spark: Any, **kw: Any) -> None:
        super().__init__(settings, spark, **kw)
        dsn = conninfo(settings)
        self.sink = PreviousMergeSink(lambda: psycopg.connect(dsn), options=sink_options(settings))


class RowAtATime:
    """The original design: a new connection and one INSERT per row (Spark ``foreach``)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def open(self, partition_id: int, epoch_id: int) -> bool:
        return True

    def process(self, row: Any) -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute("INSERT INTO baseline_usage (device_id, meter, seq, amount) VALUES (%s, %s, %s, %s)",
                         (row.device_id, row.meter, row.seq, row.value))

    def close(self, error: Any) -> None:
        pass


def fresh_settings(base: Settings, stack: NativeStack, tag: str, *, database: str | None = None,
                   previous: bool = False) -> Settings:
    """A fresh database (``bench_<tag>``, or ``database``) and, unless ``base`` already points at this
    run's topics, fresh topics."""
    name = database or f"bench_{tag}"
    with stack.postgres.admin_connect() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name),
                                                                    sql.Identifier(base.postgres.owner_user)))
    with stack.postgres.admin_connect(dbname=name) as admin:
        harden_database(admin, name, roles(base))
    topic = f"bench.{tag}.readings"
    if base.kafka.readings_topic != topic:
        stack.kafka.create_topics({topic: {}, f"bench.{tag}.devices": {}}, partitions=6)
    s = dataclasses.replace(base, postgres=dataclasses.replace(base.postgres, database=name),
                            kafka=dataclasses.replace(base.kafka, readings_topic=topic,
                                                      devices_topic=f"bench.{tag}.devices"))
    with connect(s, role="owner") as conn:  # the writer may not create tables: the owner does
        conn.execute("CREATE TABLE baseline_usage (device_id text, meter text, seq bigint, amount numeric)")
        migrate(conn, roles=roles(s))
        seed(conn, s)
        if previous:
            previous_schema(conn)
        conn.commit()
    ensure_acls(KafkaAdmin.from_settings(s))  # the stream job's principal may read this run's topics
    return s


class Phase(NamedTuple):
    rows: int          # measured: those after the first batch
    seconds: float
    exact: bool


# Readings per micro-batch in the sustained phases. The job ships with 200k (config/pipeline.yaml): a
# backlog is caught up in batches that large, and a larger batch spreads each batch's fixed cost (trigger,
# planning, the merge's rule queries) over more readings. 50k keeps four timed phases within minutes;
# it understates the shipped job's catch-up rate, never overstates it.
TRIGGER_CAP = 50_000


def sustained(spark: Any, settings: Settings, n: int, workdir: Path, *, job_type: type[StreamJob] = StreamJob,
              produced: bool = False, cap: int = TRIGGER_CAP) -> Phase:
    batch = readings(settings, n, datetime(2024, 3, 1, tzinfo=UTC))
    if not produced:
        produce(settings, batch)
    # The rate is taken from the end of the first batch (JVM warm) to the end of the last.
    settings = dataclasses.replace(settings, spark=dataclasses.replace(settings.spark, max_offsets_per_trigger=cap))
    job = job_type(settings, spark, checkpoint_dir=workdir / f"sustained-{settings.postgres.database}")
    job.start()
    first: tuple[float, int] | None = None
    while job.stats.inserted < n:
        time.sleep(0.05)
        job.check()
        if first is None and job.stats.inserted:
            first = (time.monotonic(), job.stats.inserted)
    assert first is not None
    rows, busy = n - first[1], time.monotonic() - first[0]
    job.stop()
    print(f"  {job_type.__name__}: batches={job.stats.batches} staging/collect {job.stats.staging_s:.1f}s, "
          f"database transactions {job.stats.merge_s:.1f}s, of {busy:.1f}s measured", flush=True)
    expected: dict[tuple[str, str], Decimal] = {}
    for r in batch:
        key = (r.device_id, r.meter)
        expected[key] = expected.get(key, Decimal(0)) + exact(r.value)
    with connect(settings) as conn:
        got = {(d, m): Decimal(a) for d, m, a in conn.execute(
            """SELECT h.device_id, et.key, sum(u.amount_exact) FROM energy_usage u JOIN households h
               ON h.id = u.household_id JOIN energy_types et ON et.label_ko = u.energy_type GROUP BY 1, 2""")}
    return Phase(rows, busy, got == expected)


def freshness(spark: Any, settings: Settings, rate: int, seconds: int, workdir: Path, *,
              job_type: type[StreamJob] = StreamJob) -> list[float]:
    """``settings`` name an empty topic: the job starts idle, then readings arrive at ``rate``."""
    job = job_type(settings, spark, checkpoint_dir=workdir / f"fresh-{job_type.__name__}")
    sink = TimedSink(settings)
    job.sink = sink
    job.start()
    deadline = time.monotonic() + 60
    while not job.idle() and time.monotonic() < deadline:   # the queries settle into their trigger rhythm
        time.sleep(0.5)
        job.check()
    time.sleep(3)
    sent: dict[Any, float] = {}
    batch = readings(settings, rate * seconds, datetime(2024, 6, 1, tzinfo=UTC), seq0=10_000)
    producer = threading.Thread(target=produce, args=(settings, batch), kwargs={"rate": rate, "sent": sent})
    producer.start()
    producer.join()
    deadline = time.monotonic() + 60
    while sum(len(k) for _, k in sink.commits) < len(batch) and time.monotonic() < deadline:
        time.sleep(0.2)
        job.check()
    job.stop()
    sink.close()
    return [t - sent[k] for t, keys in sink.commits for k in keys if k in sent]


def row_at_a_time(spark: Any, settings: Settings, n: int, workdir: Path) -> float:
    from apt_energy.spark.schema import READING_SCHEMA
    from pyspark.sql import functions as F

    df = (spark.readStream.format("kafka").options(**KafkaClient.from_settings(settings, "spark").spark_options())
          .option("subscribe", settings.kafka.readings_topic).option("startingOffsets", "earliest")
          .option("maxOffsetsPerTrigger", str(n)).load()
          .select(F.from_json(F.col("value").cast("string"), READING_SCHEMA).alias("r")).select("r.*"))
    def stored() -> int:
        with connect(settings) as conn:
            return int(conn.execute("SELECT count(*) FROM baseline_usage").fetchone()[0])  # type: ignore[index]

    # processingTime honours maxOffsetsPerTrigger (Trigger.Once would take the whole topic); the clock
    # stops when the first n rows are in.
    began = time.monotonic()
    query = (df.writeStream.foreach(RowAtATime(conninfo(settings)))
             .option("checkpointLocation", str(workdir / "baseline")).trigger(processingTime="1 second").start())
    while stored() < n:
        time.sleep(0.1)
    elapsed = time.monotonic() - began
    query.stop()
    return n / elapsed


def warm_up(spark: Any, settings: Settings, stack: NativeStack, tag: str, n: int, workdir: Path, cap: int) -> None:
    """Both paths once over the whole topic, untimed, each into its own scratch database: a sustained
    rate is a warm JVM's. Measured: the JIT compiler threads still took a third of a core 300k readings
    into a cold run (Spark's closure cleaner and task serialisation are compiled per batch shape), and
    would have taxed whichever phase ran first."""
    for job_type in (StreamJob, CollectJob):
        scratch = fresh_settings(settings, stack, tag, database=f"bench_{tag}_w{job_type.__name__.lower()}")
        phase = sustained(spark, scratch, n, workdir, job_type=job_type, produced=True, cap=cap)
        print(f"warm-up ({job_type.__name__}, untimed): {phase.rows / phase.seconds:,.0f} readings/s", flush=True)


@dataclasses.dataclass(frozen=True)
class Results:
    readings: int
    cap: int             # readings per micro-batch in the sustained phases
    rate: float
    old_rate: float
    previous_merge_rate: float   # the executor path with the merge before measurement identity
    exact: bool
    fresh: list[float]
    old_fresh: list[float]
    freshness_rate: int
    original: float
    original_rows: int
    load: list[float]


def run(*, n: int = 250_000, cap: int = TRIGGER_CAP, rate: int = 5000, seconds: int = 15,
        original_rows: int = 300) -> Results:
    """Every phase, on fresh databases and topics of the running native stack."""
    base = stack_settings()
    stack = NativeStack.from_settings(base)
    tag = uuid.uuid4().hex[:8]
    settings = fresh_settings(base, stack, tag)
    # A-B-C-C-B-A on the same topic, each phase into its own fresh database: the machine is shared, and its
    # load drifts during a run; the palindrome spreads that drift evenly over every pair of paths.
    order: list[tuple[type[StreamJob], Settings]] = [
        (StreamJob, settings),
        (PreviousMergeJob, fresh_settings(settings, stack, tag, database=f"bench_{tag}_p1", previous=True)),
        (CollectJob, fresh_settings(settings, stack, tag, database=f"bench_{tag}_c1")),
        (CollectJob, fresh_settings(settings, stack, tag, database=f"bench_{tag}_c2")),
        (PreviousMergeJob, fresh_settings(settings, stack, tag, database=f"bench_{tag}_p2", previous=True)),
        (StreamJob, fresh_settings(settings, stack, tag, database=f"bench_{tag}_e2"))]
    fresh = fresh_settings(base, stack, f"{tag}f")
    old_fresh = fresh_settings(base, stack, f"{tag}g")
    workdir = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    spark = build_session(settings, jars=spark_kafka_jars(settings.cache_dir), quiet=True)
    load = [os.getloadavg()[0]]
    phases: dict[type[StreamJob], list[Phase]] = {StreamJob: [], CollectJob: [], PreviousMergeJob: []}
    try:
        produce(settings, readings(settings, n, datetime(2024, 3, 1, tzinfo=UTC)))
        warm_up(spark, settings, stack, tag, n, workdir, cap)
        for job_type, phase_settings in order:
            phase = sustained(spark, phase_settings, n, workdir, job_type=job_type, produced=True, cap=cap)
            phases[job_type].append(phase)
            print(f"sustained ({job_type.__name__}): {phase.rows / phase.seconds:,.0f} readings/s, "
                  f"exact: {phase.exact}", flush=True)
            load.append(os.getloadavg()[0])
        new, old, previous = (sum(p.rows for p in phases[t]) / sum(p.seconds for p in phases[t])
                              for t in (StreamJob, CollectJob, PreviousMergeJob))
        exact = all(p.exact for ps in phases.values() for p in ps)
        delays = freshness(spark, fresh, rate, seconds, workdir)
        print(f"freshness p95 (executors): {percentile(delays, 95):.2f} s", flush=True)
        old_delays = freshness(spark, old_fresh, rate, seconds, workdir, job_type=CollectJob)
        print(f"freshness p95 (collect() baseline): {percentile(old_delays, 95):.2f} s", flush=True)
        original = row_at_a_time(spark, settings, original_rows, workdir)
        load.append(os.getloadavg()[0])
    finally:
        spark.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return Results(n, cap, new, old, previous, exact, delays, old_delays, rate, original, original_rows, load)


def figures_of(r: Results) -> list[Figure]:
    """The bench report's rows for one run."""
    load = "load average " + " ".join(f"{x:.1f}" for x in r.load)
    exact_note = "database equals what was produced" if r.exact else "DATABASE DIFFERS FROM WHAT WAS PRODUCED"
    return [
        Figure("stream job: sustained readings/s into PostgreSQL (executors)", r.rate, "readings/s",
               "collect() + driver COPY, same run", r.old_rate, goal=2.0, target=25_000,
               note=f"{r.readings:,} readings per phase in batches of {r.cap:,}, A-B-B-A; {exact_note}; {load}"),
        Figure(f"stream job: p95 freshness at {r.freshness_rate}/s (publish → row)", percentile(r.fresh, 95), "s",
               "collect() path's p95, same run", percentile(r.old_fresh, 95), higher_is_better=False, target=2.0,
               note=f"p50 {percentile(r.fresh, 50):.2f} s vs {percentile(r.old_fresh, 50):.2f} s; 1 s trigger"),
        Figure("stream job vs the original design", r.rate, "readings/s",
               f"foreach + connection per row ({r.original_rows} rows)", r.original, goal=100.0),
        Figure("stream job: merge with measurement identity + register check", r.rate, "readings/s",
               "previous merge (seq key only), same run", r.previous_merge_rate,
               note="A-B-C-C-B-A with the collect() phases; issue 21's cost of the interval key"),
    ]


def figures() -> list[Figure]:
    """The stream job's figures (``bench/report.py``): one run with the defaults."""
    return figures_of(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--readings", type=int, default=250_000, help="readings per sustained phase (6 phases)")
    ap.add_argument("--trigger-cap", type=int, default=TRIGGER_CAP,
                    help="readings per micro-batch in the sustained phases (the job ships with 200000)")
    ap.add_argument("--rate", type=int, default=5000, help="readings/s for the freshness phase")
    ap.add_argument("--seconds", type=int, default=15, help="length of the freshness phase")
    ap.add_argument("--baseline-rows", type=int, default=300)
    args = ap.parse_args()
    r = run(n=args.readings, cap=args.trigger_cap, rate=args.rate, seconds=args.seconds,
            original_rows=args.baseline_rows)
    figs = figures_of(r)
    report("spark", {
        "readings per sustained phase (6 phases, A-B-C-C-B-A)": float(r.readings),
        "database equals what was produced": "yes" if r.exact else "NO",
        **{f"{f.name} ({f.unit})": f.value for f in figs[:1]},
        "same run, previous collect() path (readings/s)": r.old_rate,
        "ratio executors / collect()": figs[0].ratio,
        f"freshness p50 at {r.freshness_rate}/s (s)": percentile(r.fresh, 50),
        f"freshness p95 at {r.freshness_rate}/s (s)": percentile(r.fresh, 95),
        f"same run, collect() path p95 at {r.freshness_rate}/s (s)": percentile(r.old_fresh, 95),
        "ratio p95 collect() / executors": figs[1].ratio,
        f"original design: foreach + connection per row (rows/s, {r.original_rows} rows)": r.original,
        "ratio ours / original": figs[2].ratio,
        "same run, previous merge without the interval key (readings/s)": r.previous_merge_rate,
        "ratio measurement-identity merge / previous merge": figs[3].ratio,
        "load average 1 min (start, after each sustained phase, end)": " ".join(f"{x:.1f}" for x in r.load),
    })


if __name__ == "__main__":
    main()
