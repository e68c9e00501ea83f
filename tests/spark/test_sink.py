"""The sink on the real Kafka, Spark and PostgreSQL: records the database refuses (poison) are
quarantined with its reason, the rest is committed exactly once, and the job keeps running."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.core.contract import DeviceMeta, MeterInfo, Reading, exact, usage_month
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect
from apt_energy.spark.job import StreamJob
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from tests.mqtt_helpers import wait_for
from tests.spark.test_job import Totals, db_totals, normalised, produce, reading, stored_count

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(pipeline_settings: Settings, database_factory: Callable[[], Settings]) -> Settings:
    db = database_factory()
    return dataclasses.replace(pipeline_settings, postgres=db.postgres)


@pytest.fixture
def job(settings: Settings, spark: SparkSession, tmp_path: Path) -> Iterator[StreamJob]:
    j = StreamJob.from_settings(settings, spark, checkpoint_dir=tmp_path / "ckpt")
    j.start()
    yield j
    j.stop()


def ledger(readings: list[Reading], settings: Settings) -> Totals:
    out: Totals = {}
    for r in readings:
        key = (r.device_id, r.meter, usage_month(r.ts, settings.complex.tz).isoformat())
        total, n = out.get(key, (Decimal(0), 0))
        out[key] = (total + exact(r.value), n + 1)
    return normalised(out)


def quarantine(settings: Settings) -> dict[str, str]:
    with connect(settings) as conn:
        return {raw: reason for raw, reason in conn.execute(
            "SELECT raw_payload, reason FROM quarantine ORDER BY kafka_partition, kafka_offset").fetchall()}


def test_poison_readings_are_quarantined_with_the_database_reason_and_the_rest_committed(
        settings: Settings, job: StreamJob) -> None:
    devices = [h.device_id for h in settings.complex.households()[:3]]
    start = datetime(2024, 4, 1, tzinfo=UTC)
    good = [reading(d, "electricity", i, start + timedelta(hours=i + 1), round(0.25 + i / 100, 2))
            for d in devices for i in range(12)]
    template = good[0].to_dict()
    # Poison the contract cannot know about: a rule only the database enforces (as a later migration or a
    # DBA might add). These pass validation and are refused inside the batch's transaction.
    with connect(settings, role="owner") as conn:
        conn.execute("ALTER TABLE meter_readings ADD CONSTRAINT only_in_the_database CHECK (seq NOT IN (500, 501))")
        conn.commit()
    # (intervals of their own: a reading of good[0]'s interval would be its duplicate, never inserted)
    poison = [json.dumps({**template, "seq": 500 + i, "ts": f"2024-04-02T0{i}:00:00Z"}).encode() for i in range(2)]
    # Hostile records PostgreSQL would refuse too; the contract stops them first, with its own reason.
    hostile = [
        json.dumps({**template, "device_id": devices[0] + "\x00"}).encode(),   # no text column holds a NUL
        json.dumps({**template, "seq": 502, "value": 1e14}).encode(),          # beyond NUMERIC(20, 6)
        json.dumps({**template, "seq": 503, "total": 3e17}).encode(),
        b'{"device_id": "a\x00b"}',                                           # its raw bytes hold a NUL
    ]
    batch = [(r.device_id.encode(), r.to_json()) for r in good]
    for i, payload in enumerate([*poison, *hostile]):      # between good readings
        batch.insert(5 + 6 * i, (b"p", payload))
    produce(settings, batch)
    wait_for(lambda: job.stats.rows >= len(batch), 120, "every record processed")
    job.check()                                    # both queries still running
    assert stored_count(settings) == len(good)
    assert db_totals(settings) == ledger(good, settings)
    stored = quarantine(settings)
    assert len(stored) == len(poison) + len(hostile)
    assert all("only_in_the_database" in stored[p.decode()] and stored[p.decode()].startswith("database: ")
               for p in poison)
    # the contract's reason, and the payload made storable (NUL → U+FFFD)
    assert sum(not reason.startswith("database: ") for reason in stored.values()) == len(hostile)

    # the job is alive: more good readings land
    more = [reading(devices[1], "water", i, start + timedelta(hours=i + 1), 0.01) for i in range(5)]
    produce(settings, [(r.device_id.encode(), r.to_json()) for r in more])
    wait_for(lambda: stored_count(settings) == len(good) + len(more), 60, "readings after the poison")
    assert db_totals(settings) == ledger(good + more, settings)


def produce_devices(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    p = Producer(KafkaClient.from_settings(settings, "admin").config())
    for key, value in records:
        p.produce(settings.kafka.devices_topic, key=key.encode(), value=value)
    assert p.flush(30) == 0


def device_rows(settings: Settings) -> dict[str, tuple[str, str | None]]:
    with connect(settings) as conn:
        return {d: (s, f) for d, s, f in conn.execute("SELECT device_id, state, firmware FROM devices").fetchall()}


def test_poison_device_records_are_quarantined_and_the_devices_query_keeps_running(
        settings: Settings, job: StreamJob) -> None:
    devices = [h.device_id for h in settings.complex.households()[:3]]

    def status(device: str, state: str) -> tuple[str, bytes]:
        return f"{device}/status", json.dumps({"device_id": device, "state": state,
                                              "ts": "2024-04-01T00:00:00Z"}).encode()

    homes = {h.device_id: h for h in settings.complex.households()}

    def meta(device: str, firmware: str, extra: str = "") -> tuple[str, bytes]:
        h = homes[device]
        doc = DeviceMeta(device, h.complex_id, h.building, h.floor, h.unit, (MeterInfo("water", "m³"),), firmware,
                         3600).to_json()
        return f"{device}/meta", doc[:-1] + extra.encode() + b"}"

    with connect(settings, role="owner") as conn:  # a rule only the database knows (see the readings test)
        conn.execute("ALTER TABLE devices ADD CONSTRAINT only_in_the_database "
                     "CHECK (firmware IS DISTINCT FROM 'fw-poison')")
        conn.commit()
    poison = [meta(devices[1], "fw-poison")]
    hostile = [                                                  # the contract refuses these first
        meta(devices[0], "fw-1", ',"calibration":NaN'),          # JSON PostgreSQL's jsonb refuses
        meta(devices[1], "fw-" + "9" * 80),                       # longer than firmware VARCHAR(64)
        status("gw-" + "x" * 80, "online"),                       # longer than device_id VARCHAR(64)
        status("gw-\x00-1", "online"),                            # a NUL in the key
    ]
    # The good records first; then the bad ones, each the latest for its key, so it is the one the sink
    # would write.
    produce_devices(settings, [status(d, "online") for d in devices] + [meta(d, "fw-1") for d in devices])
    wait_for(lambda: len(device_rows(settings)) == len(devices), 90, "the good devices")
    produce_devices(settings, [*poison, *hostile])
    wait_for(lambda: len(quarantine(settings)) == len(poison) + len(hostile), 60, "the poison quarantined")
    assert device_rows(settings) == {d: ("online", "fw-1") for d in devices}
    with connect(settings) as conn:
        rows = conn.execute("SELECT source_topic, reason FROM quarantine").fetchall()
    assert all(topic == settings.kafka.devices_topic for topic, _ in rows)
    assert sum(reason.startswith("database: ") and "only_in_the_database" in reason for _, reason in rows) == 1

    produce_devices(settings, [status(devices[2], "offline")])   # the query is alive
    wait_for(lambda: device_rows(settings)[devices[2]][0] == "offline", 60, "a later status")
    job.check()


def usage(settings: Settings) -> dict[tuple[str, str], tuple[Decimal, int]]:
    with connect(settings) as conn:
        return {(d, m): (Decimal(a).normalize(), n) for d, m, a, n in conn.execute(
            """SELECT h.device_id, et.key, u.amount_exact, u.reading_count FROM energy_usage u
               JOIN households h ON h.id = u.household_id JOIN energy_types et ON et.label_ko = u.energy_type""")}


def reasons(settings: Settings) -> list[tuple[int, str]]:
    with connect(settings) as conn:
        return [(int(o), r) for o, r in conn.execute(
            "SELECT kafka_offset, reason FROM quarantine ORDER BY kafka_offset").fetchall()]


def test_a_reused_seq_is_quarantined_and_an_identical_replay_changes_nothing(
        settings: Settings, job: StreamJob) -> None:
    dev = settings.complex.households()[0].device_id
    start = datetime(2024, 4, 1, tzinfo=UTC)
    first = [reading(dev, "electricity", i, start + timedelta(hours=i + 1), 1.0) for i in range(5)]
    produce(settings, [(dev.encode(), r.to_json()) for r in first])
    wait_for(lambda: stored_count(settings) == 5, 90, "the first readings")
    before = usage(settings)
    assert before == {(dev, "electricity"): (Decimal(5), 5)}

    produce(settings, [(dev.encode(), r.to_json()) for r in first])          # an identical replay
    wait_for(lambda: job.stats.rows >= 10, 60, "the replay")
    assert usage(settings) == before and stored_count(settings) == 5 and reasons(settings) == []

    reused = [
        dataclasses.replace(first[2], value=9.0),                            # same key, another value
        dataclasses.replace(first[3], ts=first[3].ts + timedelta(days=30)),  # same key, another time
        reading(dev, "electricity", 7, start + timedelta(hours=8), 1.0),     # new, then its key reused
        reading(dev, "electricity", 7, start + timedelta(hours=8), 2.5),     # in the same batch
    ]
    produce(settings, [(dev.encode(), r.to_json()) for r in reused])   # one key: one partition, in order
    wait_for(lambda: job.stats.rows >= 14, 60, "the reused readings")
    assert usage(settings) == {(dev, "electricity"): (Decimal(6), 6)}      # only seq 7's first record counted
    assert [r for _, r in reasons(settings)] == ["reused seq"] * 3
    assert [o for o, _ in reasons(settings)] == [10, 11, 13]           # offsets within the one partition


def test_a_new_life_counts_its_readings_from_seq_0(settings: Settings) -> None:
    """The sink side of ``life``: the same seqs in a new life are new readings."""
    from apt_energy.database import conninfo
    from apt_energy.spark.job import sink_options
    from apt_energy.spark.sink import PostgresSink, StagedReading

    dev = settings.complex.households()[0].device_id
    start = datetime(2024, 4, 1, tzinfo=UTC)

    def staged(life: int, seq: int, offset: int, value: str) -> StagedReading:
        ts = start + timedelta(hours=seq + 1 + 100 * life)
        return StagedReading(dev, "electricity", life, seq, ts.isoformat(), 3600, Decimal(value), Decimal(value),
                             "kWh", usage_month(ts, settings.complex.tz), "t", 0, offset, None, "{}", None)

    sink = PostgresSink(lambda: psycopg.connect(conninfo(settings)), options=sink_options(settings))
    try:
        sink.write_readings(0, [staged(0, i, i, "1.5") for i in range(3)])
        sink.write_readings(1, [staged(1, i, 3 + i, "2.5") for i in range(3)])    # gateway reset: seq from 0
        again = sink.write_readings(2, [staged(1, i, 3 + i, "2.5") for i in range(3)])
    finally:
        sink.close()
    assert again.inserted == 0 and again.quarantined == 0
    assert usage(settings) == {(dev, "electricity"): (Decimal("12"), 6)}
    assert stored_count(settings) == 6 and reasons(settings) == []


def test_a_merge_finding_fewer_staged_rows_than_were_staged_writes_nothing(settings: Settings) -> None:
    """PostgreSQL empties UNLOGGED tables after a crash: the merge must notice, not commit a short batch."""
    from apt_energy.database import conninfo
    from apt_energy.spark.job import record_check, sink_options
    from apt_energy.spark.sink import PostgresSink
    from apt_energy.spark.staging import BatchKey, PartitionStager

    dev = settings.complex.households()[0].device_id
    start = datetime(2024, 4, 1, tzinfo=UTC)
    key = BatchKey(stream_id=42, batch_id=7)

    def row(seq: int) -> tuple[object, ...]:
        ts = start + timedelta(hours=seq + 1)
        return (key.stream_id, key.batch_id, dev, "electricity", 0, seq, ts, 3600, 1.5, 1.5, "kWh",
                usage_month(ts, settings.complex.tz), "t", 0, seq, None, "{}", None)

    dsn = conninfo(settings)
    stager = PartitionStager(dsn, record_check(settings), key, datetime.now(UTC))
    sink = PostgresSink(lambda: psycopg.connect(dsn), options=sink_options(settings))
    try:
        assert stager.stage([row(i) for i in range(4)]) == 0
        with psycopg.connect(dsn) as conn:
            conn.execute("DELETE FROM reading_staging WHERE kafka_offset = 2")
        assert sink.merge(key, staged=4) is None
        assert stored_count(settings) == 0
        sink.clear(key)                                      # the job stages the batch again
        stager.stage([row(i) for i in range(4)])
        result = sink.merge(key, staged=4)
        assert result is not None and result.inserted == 4
        assert sink.merge(key, staged=0) is not None         # its staged rows went with the merge
    finally:
        sink.close()
    assert usage(settings) == {(dev, "electricity"): (Decimal(6), 4)}


def test_a_reading_of_a_meter_the_database_does_not_know_is_quarantined_not_stored(settings: Settings) -> None:
    """meter_readings has no foreign keys (migration 0008): the merge's joins are its checks."""
    from apt_energy.database import conninfo
    from apt_energy.spark.job import record_check, sink_options
    from apt_energy.spark.sink import PostgresSink
    from apt_energy.spark.staging import BatchKey, PartitionStager

    dev = settings.complex.households()[0].device_id
    ts = datetime(2024, 4, 1, 1, tzinfo=UTC)
    key = BatchKey(stream_id=43, batch_id=1)

    def row(meter: str, device: str, offset: int) -> tuple[object, ...]:
        return (key.stream_id, key.batch_id, device, meter, 0, offset, ts, 3600, 1.25, 1.25, "kWh",
                usage_month(ts, settings.complex.tz), "t", 0, offset, None, f"raw{offset}", None)

    dsn = conninfo(settings)
    sink = PostgresSink(lambda: psycopg.connect(dsn), options=sink_options(settings))
    try:
        PartitionStager(dsn, record_check(settings), key, datetime.now(UTC)).stage(
            [row("electricity", dev, 0), row("gas", dev, 1), row("electricity", "nobody-99-999", 2)])
        result = sink.merge(key, staged=3)
        assert result is not None and (result.inserted, result.quarantined) == (1, 2)
    finally:
        sink.close()
    assert quarantine(settings) == {"raw1": "unknown meter gas", "raw2": "unknown device nobody-99-999"}
    assert usage(settings) == {(dev, "electricity"): (Decimal("1.25"), 1)}
    assert stored_count(settings) == 1
