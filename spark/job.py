"""The streaming job: Kafka → parse and validate → exact PostgreSQL sink (+ device status).

Wiring only: the logic lives in ``transforms`` (pure DataFrame functions), ``rules`` (pure) and
``sink`` (SQL). Restarting resumes from the checkpoint; a batch cut short by a crash is replayed and,
thanks to the sink's idempotent writes, changes nothing twice.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, TypeVar

import psycopg
from apt_energy.config import Settings
from apt_energy.config.settings import JIT_OPTIONS, SPARK_QUIET_LOG4J2, SPARK_STREAM_LOG4J2, spark_driver_network
from apt_energy.core.backoff import BackoffPolicy
from apt_energy.core.errors import ServiceError
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import conninfo
from apt_energy.spark.sink import BatchResult, PostgresSink, SinkOptions
from apt_energy.spark.staging import COUNT_SCHEMA, KAFKA_COLUMNS, BatchKey, PartitionStager, RecordCheck, stream_id
from apt_energy.spark.transforms import parse_devices, received_ms
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

logger = logging.getLogger(__name__)

# A task that reads a partition up to its end would otherwise wait out the consumer's default 500 ms for
# more data there, once per partition: 1.4 s of a 1 s batch on 6 partitions (measured, bench_spark).
FETCH_MAX_WAIT_MS = 50


def build_session(settings: Settings, *, jars: Sequence[Path], app: str = "apt-energy",
                  quiet: bool = False) -> SparkSession:
    """A SparkSession with the Kafka connector ``jars`` (``apt_energy.stack.jars.spark_kafka_jars``).
    ``quiet``: only errors from the JVM (its log goes to a terminal: benchmarks), else warnings too."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    java = JIT_OPTIONS[settings.spark.jit]
    log4j = SPARK_QUIET_LOG4J2 if quiet else SPARK_STREAM_LOG4J2
    driver_java = f"{java} -Dlog4j2.configurationFile={log4j}"
    builder = SparkSession.builder
    for key, value in spark_driver_network(settings.spark.driver_host).items():
        builder = builder.config(key, value)
    spark = (builder.master(settings.spark.master).appName(app)
             .config("spark.driver.extraJavaOptions", driver_java.strip())
             .config("spark.executor.extraJavaOptions", java)
             .config("spark.jars", ",".join(str(j) for j in jars))
             .config("spark.sql.shuffle.partitions", str(settings.spark.shuffle_partitions))
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.sql.ansi.enabled", "false")   # bad input becomes NULL + a quarantine reason
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", "1g")
             .config("spark.sql.streaming.forceDeleteTempCheckpointLocation", "true")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR" if quiet else "WARN")
    return spark


def private_checkpoints(directory: Path) -> None:
    """The checkpoints (Kafka offsets, the batches' state) are this user's only: 0700, whatever the
    umask, so the files Spark writes inside under the process's umask are out of other users' reach."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)


def sink_options(settings: Settings) -> SinkOptions:
    """The sink's options, from the settings."""
    return SinkOptions(timezone=settings.complex.timezone, rules=settings.rules,
                       units={k: e.unit for k, e in settings.energy.items()},
                       devices_topic=settings.kafka.devices_topic)


def record_check(settings: Settings) -> RecordCheck:
    """How the executors judge readings records, from the settings."""
    return RecordCheck(units={k: e.unit for k, e in settings.energy.items()}, timezone=settings.complex.timezone,
                       max_future_s=settings.spark.max_future_s, max_past_days=settings.spark.max_past_days)


@dataclass(frozen=True)
class JobOptions:
    """What the stream job reads of the settings: its Kafka principal and topics, its pace, its checkpoints,
    the writer's connection (the only database secret it holds) and its sink's and executors' options."""

    kafka: KafkaClient                 # the spark principal
    readings_topic: str
    devices_topic: str
    dsn: str                           # the writer's libpq connection string (password included: never log it)
    checkpoint_dir: Path
    sink: SinkOptions
    record_check: RecordCheck
    trigger_s: float = 1.0
    max_offsets_per_trigger: int = 200000
    master: str = "local[2]"           # for the log line only: the session is built by the caller

    @classmethod
    def from_settings(cls, settings: Settings, *, checkpoint_dir: Path | None = None,
                      sink: SinkOptions | None = None) -> JobOptions:
        sp, k = settings.spark, settings.kafka
        return cls(kafka=KafkaClient.from_settings(settings, "spark"), readings_topic=k.readings_topic,
                   devices_topic=k.devices_topic, dsn=conninfo(settings),
                   checkpoint_dir=checkpoint_dir or settings.path(sp.checkpoint_dir),
                   sink=sink or sink_options(settings), record_check=record_check(settings),
                   trigger_s=sp.trigger_s, max_offsets_per_trigger=sp.max_offsets_per_trigger, master=sp.master)


@dataclass
class JobStats:
    batches: int = 0
    rows: int = 0
    inserted: int = 0
    quarantined: int = 0
    duplicates: int = 0         # measurement duplicates set aside (spark/sink.py)
    alerts: int = 0
    last: BatchResult | None = None
    staging_s: float = 0.0      # time in Spark: read, judge and COPY by the executors
    merge_s: float = 0.0        # time in the driver's merge transactions
    errors: list[str] = field(default_factory=list)


T = TypeVar("T")

#: Transient database failures: 0.5 s doubling to 10 s, for as long as the outage lasts.
DB_RETRY = BackoffPolicy(base_s=0.5, cap_s=10.0)


def with_retries(action: Callable[[], T], *, what: str, stop: threading.Event | None = None,
                 attempts: int | None = None) -> T:
    """Transient database errors (PostgreSQL restarting or unreachable, a serialization failure, a
    deadlock — psycopg's ``OperationalError`` family) cost a delay, not the query: retried with backoff
    until it works, ``stop`` is set or ``attempts`` are spent. The batch's transaction either committed
    or not, so retrying it is safe (and exact). Data errors never reach here: the sink quarantines them."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except psycopg.OperationalError as exc:
            if (attempts is not None and attempt >= attempts) or (stop is not None and stop.is_set()):
                raise
            delay = DB_RETRY.ceiling(attempt - 1)
            logger.warning("transient failure what=%s attempt=%d retry_in=%.1fs error=%s", what, attempt, delay,
                           str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


class WatchedQuery(Protocol):
    """What :func:`query_failure` reads of a ``StreamingQuery``."""

    @property
    def isActive(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


def query_failure(query: WatchedQuery, *, stopping: bool = False) -> str | None:
    """Why ``query`` is dead (its error's first line), or None while it runs (or ended because the job
    is ``stopping``). A JVM that is gone, or an error pyspark cannot translate, counts as dead too."""
    try:
        if query.isActive:
            return None
        exc = query.exception()
    except Exception as err:  # noqa: BLE001 (py4j, or pyspark failing to translate: the JVM or its gateway is gone)
        return f"unreachable ({type(err).__name__}: {_first_line(err)})"
    if exc is not None:
        return _first_line(exc)
    return None if stopping else "stopped without an error"


# The line of a (Java-wrapped Python) traceback that names the error: ``psycopg.OperationalError: ...``.
_ERROR_LINE = re.compile(r"^[\w.]*(?:Error|Exception)\w*: \S")


def _first_line(exc: BaseException) -> str:
    """One line for the log: the innermost ``SomeError: message`` of a traceback the JVM wrapped
    (a failed foreachBatch reads "An exception was raised by the Python Proxy ..."), else the first."""
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    named = [line for line in lines if _ERROR_LINE.match(line)]
    return (named[-1] if named else lines[0] if lines else type(exc).__name__)[:300]


class StreamJob:
    """Two streaming queries (readings, devices) feeding the PostgreSQL sink.

    Readings scale with the executors: each partition of a micro-batch reaches a Python worker as Arrow
    batches of raw Kafka records, which it judges by the contract and COPYs into ``reading_staging``
    under the batch's key in the same pass (``staging.PartitionStager``); the driver then runs one short
    merge transaction per batch. Devices (a few records per batch) go through the driver."""

    def __init__(self, options: JobOptions, spark: SparkSession) -> None:
        self.options = options
        self.spark = spark
        dsn = options.dsn
        self.sink = PostgresSink(lambda: psycopg.connect(dsn), options=options.sink)
        self.checkpoint_dir = options.checkpoint_dir
        self.stream_id = stream_id(str(self.checkpoint_dir.resolve() / "readings"))
        self.dsn = dsn
        self.record_check = options.record_check
        self.stats = JobStats()
        self.queries: list[StreamingQuery] = []
        self.stop_event = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, spark: SparkSession, *, checkpoint_dir: Path | None = None,
                      options: SinkOptions | None = None) -> StreamJob:
        """The door: the job's options from the settings tree (``options``: the sink's, default
        :func:`sink_options`)."""
        return cls(JobOptions.from_settings(settings, checkpoint_dir=checkpoint_dir, sink=options), spark)

    def _kafka(self, topic: str) -> DataFrame:
        o = self.options
        return (self.spark.readStream.format("kafka")
                .options(**o.kafka.spark_options())
                .option("subscribe", topic)
                .option("startingOffsets", "earliest")
                .option("maxOffsetsPerTrigger", str(o.max_offsets_per_trigger))
                .option("includeHeaders", "true")
                .option("kafka.fetch.max.wait.ms", str(FETCH_MAX_WAIT_MS))
                .load())

    def start(self) -> None:
        o = self.options
        trigger = f"{o.trigger_s} seconds"
        private_checkpoints(self.checkpoint_dir)
        self.queries.append(
            self._readings_output(self._kafka(o.readings_topic)).writeStream.queryName("readings")
            .foreachBatch(self._readings_batch)
            .option("checkpointLocation", str(self.checkpoint_dir / "readings"))
            .trigger(processingTime=trigger).start())
        devices = parse_devices(self._kafka(o.devices_topic))
        self.queries.append(
            devices.writeStream.queryName("devices").foreachBatch(self._devices_batch)
            .option("checkpointLocation", str(self.checkpoint_dir / "devices"))
            .trigger(processingTime=trigger).start())
        logger.info("stream job started master=%s trigger=%s checkpoint=%s readings=%s", o.master, trigger,
                    self.checkpoint_dir, o.readings_topic)

    def _readings_output(self, kafka: DataFrame) -> DataFrame:
        """What each readings micro-batch carries: the raw Kafka records (:data:`staging.KAFKA_COLUMNS`);
        the executors judge and stage them in one Python pass (``staging.PartitionStager``)."""
        return kafka.select("value", "topic", "partition", "offset", received_ms(kafka).alias("received_ms"))

    def _readings_batch(self, df: DataFrame, batch_id: int) -> None:
        key = BatchKey(self.stream_id, batch_id)
        what = f"readings batch {batch_id}"
        stager = PartitionStager(self.dsn, self.record_check, key, datetime.now(UTC))
        # One staging task per core, not per Kafka partition: each task costs a Python hand-off and a
        # COPY transaction, so on 2 cores 6 partitions meant 3 rounds of them per batch. Asked per batch:
        # a cluster's executors (and so its cores) come and go.
        tasks = max(1, self.spark.sparkContext.defaultParallelism)
        counts = df.select(*KAFKA_COLUMNS).coalesce(tasks).mapInArrow(stager, COUNT_SCHEMA)
        for attempt in itertools.count(1):
            with_retries(lambda: self.sink.clear(key), what=what, stop=self.stop_event)   # a retry's leftovers
            began = time.monotonic()
            staged = sum(int(r.staged) for r in counts.collect())   # the executors COPY; each counts its rows
            self.stats.staging_s += time.monotonic() - began
            if not staged:
                return
            result = with_retries(functools.partial(self.sink.merge, key, staged=staged), what=what,
                                  stop=self.stop_event)
            if result is not None:
                self._count(result)
                return
            if self.stop_event.is_set():
                raise ServiceError(f"{what}: staged rows lost and the job is stopping", service="postgresql")
            logger.warning("staged rows lost (PostgreSQL restarted?); staging again batch=%d attempt=%d",
                           batch_id, attempt)

    def _count(self, result: BatchResult) -> None:
        st = self.stats
        st.batches += 1
        st.rows += result.rows
        st.inserted += result.inserted
        st.quarantined += result.quarantined
        st.duplicates += result.duplicates
        st.alerts += result.alerts
        st.merge_s += result.seconds
        st.last = result
        logger.info("%s", result.line())

    def _devices_batch(self, df: DataFrame, batch_id: int) -> None:
        rows = [tuple(r) for r in df.collect()]
        if rows:
            n = with_retries(lambda: self.sink.write_devices(batch_id, rows), what=f"devices batch {batch_id}",
                             stop=self.stop_event)
            logger.debug("devices batch=%d rows=%d devices=%d", batch_id, len(rows), n)

    def idle(self) -> bool:
        """No batch running and the last one read nothing new."""
        for q in self.queries:
            st = q.status
            if st.get("isTriggerActive") or st.get("isDataAvailable"):
                return False
        return True

    def check(self) -> None:
        """Raise :class:`ServiceError` naming the query and its error when either query has died (an
        error, or ended while the job was not stopping): the job must then exit, so that its supervisor
        restarts it from the checkpoint, rather than live on with half its work stopped."""
        for q in self.queries:
            why = query_failure(q, stopping=self.stop_event.is_set())
            if why is not None:
                raise ServiceError(f"query {q.name} died: {why}", service="spark")

    def run_until_stopped(self, *, health_file: Path | None = None) -> None:
        """Check the queries every second until stopped; ``health_file`` is touched after each check that
        found both alive (a container healthcheck reads its age)."""
        try:
            while not self.stop_event.wait(1.0):
                self.check()
                if health_file is not None:
                    health_file.touch()
        finally:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Let a running batch finish (its transaction commits or not at all), then stop the queries."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(q.isActive and q.status.get("isTriggerActive")
                                                  for q in self.queries):
            time.sleep(0.1)
        for q in self.queries:
            if q.isActive:
                q.stop()
        self.sink.close()
