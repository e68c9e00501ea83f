"""Measurement identity in the sink, on the real PostgreSQL: a meter interval is stored at most once,
whatever its seq or life; repeats are counted, contradictions quarantined naming both readings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.database import connect, conninfo
from apt_energy.spark.job import sink_options
from apt_energy.spark.sink import PostgresSink, StagedReading

from apt_energy.contract import usage_month
from tests.spark.test_job import stored_count

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
