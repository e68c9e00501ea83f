"""Measurement identity in the sink, on the real PostgreSQL: a meter interval is stored at most once,
whatever its seq or life; repeats are counted, contradictions quarantined naming both readings."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.core.contract import DeviceMeta, MeterInfo, Reading, exact, usage_month
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import completeness, connect, conninfo
from apt_energy.spark.job import StreamJob, sink_options
from apt_energy.spark.sink import PostgresSink, StagedReading
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from tests.mqtt_helpers import wait_for
from tests.spark.test_job import produce, stored_count

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def settings(pipeline_settings: Settings, database_factory: Callable[[], Settings]) -> Settings:
    return dataclasses.replace(pipeline_settings, postgres=database_factory().postgres)


@pytest.fixture
def sink(settings: Settings) -> Iterator[PostgresSink]:
    s = PostgresSink(lambda: psycopg.connect(conninfo(settings)), options=sink_options(settings))
    yield s
    s.close()


class Records:
    """Staged readings of one device's water meter, each at its own Kafka offset."""

    def __init__(self, settings: Settings) -> None:
        self.device = settings.complex.households()[0].device_id
        self.tz = settings.complex.tz
        self.offset = 0

    def __call__(self, hour: int, value: str, total: str, *, seq: int, life: int = 0, interval_s: int = 3600,
                 offset: int | None = None) -> StagedReading:
        """The reading of the interval ending ``hour`` hours after START."""
        ts = START + timedelta(hours=hour)
        if offset is None:
            offset, self.offset = self.offset, self.offset + 1
        return StagedReading(self.device, "water", life, seq, ts.isoformat(), interval_s, Decimal(value),
                             Decimal(total), "m³", usage_month(ts, self.tz), "t", 0, offset, None,
                             f"raw{offset}", None)


def water(settings: Settings) -> tuple[Decimal, int]:
    with connect(settings) as conn:
        row = conn.execute("SELECT amount_exact, reading_count FROM energy_usage").fetchone()
    return (Decimal(row[0]).normalize(), int(row[1])) if row else (Decimal(0), 0)


def duplicates(settings: Settings) -> int:
    with connect(settings) as conn:
        return int(conn.execute("SELECT count(*) FROM duplicate_readings").fetchone()[0])  # type: ignore[index]


def reasons(settings: Settings) -> list[str]:
    with connect(settings) as conn:
        return [r for (r,) in conn.execute("SELECT reason FROM quarantine ORDER BY kafka_offset").fetchall()]


def test_an_interval_resent_under_a_new_seq_or_life_is_counted_as_a_duplicate_not_stored_and_not_summed(
        settings: Settings, sink: PostgresSink) -> None:
    r = Records(settings)
    first = [r(1, "0.5", "10.5", seq=0), r(2, "0.25", "10.75", seq=1), r(3, "1", "11.75", seq=2)]
    assert sink.write_readings(0, first).inserted == 3
    # a restarted gateway re-sends its buffer with new seqs; a reset one under a new life
    resent = [r(2, "0.25", "10.75", seq=17), r(3, "1", "11.75", seq=18), r(3, "1", "11.75", seq=0, life=9)]
    result = sink.write_readings(1, resent)
    assert (result.inserted, result.duplicates, result.quarantined) == (0, 3, 0)
    assert "duplicates=3 replays=0" in result.line()
    # the same Kafka records replayed: the transport identity makes it a no-op, not more duplicates
    again = sink.write_readings(2, resent)
    assert (again.inserted, again.quarantined) == (0, 0)
    assert duplicates(settings) == 3
    # two records of one new interval in one batch: the first is stored, the second a duplicate of it
    both = sink.write_readings(3, [r(4, "0.5", "12.25", seq=3), r(4, "0.5", "12.25", seq=19)])
    assert (both.inserted, both.duplicates) == (1, 1)
    assert water(settings) == (Decimal("2.25"), 4)
    assert stored_count(settings) == 4 and duplicates(settings) == 4 and reasons(settings) == []
    with connect(settings) as conn:
        of = conn.execute("SELECT stored_life, stored_seq FROM duplicate_readings WHERE seq = 19").fetchone()
    assert of == (0, 3)


def test_the_same_interval_with_another_value_is_a_conflict_quarantined_naming_both_readings(
        settings: Settings, sink: PostgresSink) -> None:
    r = Records(settings)
    sink.write_readings(0, [r(1, "0.012", "3.1", seq=17, life=5)])
    result = sink.write_readings(1, [r(1, "0.02", "3.108", seq=93, life=6)])
    assert (result.inserted, result.quarantined, result.duplicates) == (0, 1, 0)
    dev = r.device
    assert reasons(settings) == [
        f"conflict: interval 2024-03-01T01:00:00Z/3600s of {dev} water already stored as seq 17 life 5 value 0.012 "
        "total 3.1; this seq 93 life 6 value 0.02 total 3.108"]
    # the same value with another register is a conflict too; inside one batch, against its first record
    inside = sink.write_readings(2, [r(2, "0.5", "3.6", seq=18, life=5), r(2, "0.5", "9.9", seq=94, life=6)])
    assert (inside.inserted, inside.quarantined) == (1, 1)
    assert reasons(settings)[1] == (
        f"conflict: interval 2024-03-01T02:00:00Z/3600s of {dev} water already stored as seq 18 life 5 value 0.5 "
        "total 3.6; this seq 94 life 6 value 0.5 total 9.9")
    assert water(settings) == (Decimal("0.512"), 2) and stored_count(settings) == 2


def test_an_interval_overlapping_a_stored_one_of_another_length_is_quarantined(
        settings: Settings, sink: PostgresSink) -> None:
    r = Records(settings)
    sink.write_readings(0, [r(2, "1", "5", seq=0)])                                  # (01:00, 02:00]
    inside = r(2, "0.25", "4.25", seq=7, life=1, interval_s=900)                     # (01:45, 02:00]
    across = r(3, "0.5", "5.5", seq=8, life=1)._replace(ts=(START + timedelta(hours=2, minutes=30)).isoformat())
    #                                                                                  (01:30, 02:30]
    after = r(3, "1", "6", seq=1)                                                    # (02:00, 03:00]: touches only
    result = sink.write_readings(1, [inside, across, after])
    assert (result.inserted, result.quarantined) == (1, 2)
    got = reasons(settings)
    assert all(x.startswith("overlap: interval ") and " overlaps 2024-03-01T02:00:00Z/3600s already stored as "
               "seq 0 life 0 value 1 total 5; this seq " in x for x in got), got
    # inside one batch: the later-ending of two overlapping new intervals is refused
    batch = [r(5, "2", "8", seq=2, interval_s=7200), r(5, "0.5", "6.5", seq=9, life=1, interval_s=1800),
             r(6, "1", "9", seq=3)]
    result = sink.write_readings(2, batch)
    assert (result.inserted, result.quarantined) == (2, 1)
    assert reasons(settings)[-1].startswith(f"overlap: interval 2024-03-01T05:00:00Z/1800s of {r.device} water "
                                            "overlaps the same end /7200s already stored as seq 2 life 0")
    assert water(settings) == (Decimal(5), 4)


def breaks(settings: Settings) -> set[tuple[int, int, str, Decimal, int]]:
    with connect(settings) as conn:
        return {(int(s), int(p), k, Decimal(st).normalize(), int(m)) for s, p, k, st, m in conn.execute(
            "SELECT seq, prev_seq, kind, step, missing_s FROM register_breaks").fetchall()}


def test_register_breaks_and_gaps_are_flagged_pairwise_in_any_arrival_order_and_usage_sums_values(
        settings: Settings, sink: PostgresSink) -> None:
    r = Records(settings)
    sink.write_readings(0, [r(1, "0.5", "10.5", seq=0), r(2, "0.25", "10.75", seq=1)])
    # hour 3 is missing (a gap: the register holds its consumption); hour 6's register went backwards
    sink.write_readings(1, [r(4, "0.5", "12.25", seq=3), r(5, "1", "13.25", seq=4), r(6, "0.5", "2", seq=5)])
    assert breaks(settings) == {(3, 1, "gap", Decimal("1.5"), 3600), (5, 4, "backwards", Decimal("-11.25"), 0)}
    with connect(settings) as conn:   # the missing hour, as the bill and the demo's summary say it
        month = completeness.household(conn, r.device)
        assert [completeness.estimated_note(c.expected_s, c.measured_s) for c in month] == [
            "estimated: 5 of 6 hours measured"]
        assert [completeness.summary_line(c) for c in completeness.complex_summary(conn)] == [
            "water        83.33 % of 6 expected hours measured, 1 of 1 household-months incomplete"]
    # hour 3 arrives late: continuous with both its stored neighbours, nothing new flagged
    sink.write_readings(2, [r(3, "1", "11.75", seq=2)])
    assert len(breaks(settings)) == 2
    # after the backwards register, the next step is checked against it (pairwise); a new life is not
    sink.write_readings(3, [r(7, "0.5", "13.75", seq=6), r(8, "0.125", "0.625", seq=0, life=1)])
    assert (6, 5, "step", Decimal("11.75"), 0) in breaks(settings) and len(breaks(settings)) == 3
    assert water(settings) == (Decimal("4.375"), 8) and reasons(settings) == []


@pytest.fixture
def job(settings: Settings, spark: SparkSession, tmp_path: Path) -> Iterator[StreamJob]:
    j = StreamJob.from_settings(settings, spark, checkpoint_dir=tmp_path / "ckpt")
    j.start()
    yield j
    j.stop()


def test_a_meter_replaced_mid_month_bills_both_meters_intervals_and_keeps_its_history(
        settings: Settings, job: StreamJob) -> None:
    """The real stream job: two lives of one meter in one month, the new register starting low; the
    month is the exact sum of both meters' intervals, meter_lives says which register was which, and
    month_completeness counts the two missing hours."""
    h = settings.complex.households()[0]
    old = [Reading(h.device_id, "water", i, START + timedelta(hours=i + 1), 3600, 0.125, 1000.125 + 0.125 * i,
                   "m³", life=7) for i in range(10)]
    # the new meter: seq from 0, register from 0.5; hours 21 and 22 never arrive
    new = [Reading(h.device_id, "water", i, START + timedelta(hours=11 + i + (2 if i >= 10 else 0)), 3600, 0.25,
                   0.75 + 0.25 * i, "m³", life=8) for i in range(12)]
    meta = json.loads(DeviceMeta(h.device_id, h.complex_id, h.building, h.floor, h.unit,
                                 (MeterInfo("water", "m³"),), "fw-1", 3600).to_json())
    meta["meters"][0].update(life=8, serial="WM-2024-0042", since="2024-03-01T10:00:00Z")
    produce(settings, [(h.device_id.encode(), r.to_json()) for r in old + new])
    p = Producer(KafkaClient.from_settings(settings, "admin").config())
    p.produce(settings.kafka.devices_topic, key=f"{h.device_id}/meta".encode(), value=json.dumps(meta).encode())
    assert p.flush(30) == 0
    wait_for(lambda: stored_count(settings) == 22, 90, "both meters' readings")
    want = sum((exact(r.value) for r in old + new), Decimal(0))
    assert water(settings) == (want.normalize(), 22)
    assert want == Decimal("4.25")
    wait_for(lambda: lives(settings).get(8, (None,))[-1] is not None, 60, "the meta's serial")
    assert lives(settings) == {
        7: (START, Decimal("1000"), START + timedelta(hours=10), Decimal("1001.25"), None),
        8: (START + timedelta(hours=10), Decimal("0.5"), START + timedelta(hours=24), Decimal("3.5"), "WM-2024-0042"),
    }
    with connect(settings) as conn:
        rows = conn.execute("SELECT h.device_id, c.meter, c.usage_month, c.expected_s, c.measured_s "
                            "FROM month_completeness c JOIN households h ON h.id = c.household_id").fetchall()
    assert rows == [(h.device_id, "water", date(2024, 3, 1), 24 * 3600, 22 * 3600)]


def lives(settings: Settings) -> dict[int, tuple[object, ...]]:
    with connect(settings) as conn:
        return {int(r[0]): tuple(Decimal(x).normalize() if isinstance(x, Decimal) else x for x in r[1:])
                for r in conn.execute("SELECT life, first_interval_start, first_register, last_interval_end, "
                                      "last_register, serial FROM meter_lives ORDER BY life").fetchall()}
