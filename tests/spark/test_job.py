"""The stream job on the real Kafka, Spark and PostgreSQL: exact against the simulator's ledger."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from apt_energy.bridge import Bridge
from apt_energy.config import Settings
from apt_energy.core.contract import Reading, exact, usage_month
from apt_energy.core.kafka import KafkaClient
from apt_energy.database import connect
from apt_energy.edge import Fleet, FleetOptions, Ledger
from apt_energy.spark.job import StreamJob
from confluent_kafka import Producer
from pyspark.sql import SparkSession

from tests.conftest import env_for
from tests.kafka_helpers import consume
from tests.mqtt_helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(pipeline_settings: Settings, database_factory: Callable[[], Settings]) -> Settings:
    db = database_factory()
    return dataclasses.replace(pipeline_settings, postgres=db.postgres)


@pytest.fixture
def job_factory(spark: SparkSession, tmp_path: Path) -> Iterator[Callable[[Settings], StreamJob]]:
    jobs: list[StreamJob] = []

    def make(settings: Settings) -> StreamJob:
        job = StreamJob.from_settings(settings, spark, checkpoint_dir=tmp_path / f"ckpt{len(jobs)}")
        job.start()
        jobs.append(job)
        return job

    yield make
    for job in jobs:
        job.stop()


def db_totals(settings: Settings) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    with connect(settings) as conn:
        rows = conn.execute(
            """SELECT h.device_id, et.key, u.usage_date, u.amount_exact, u.reading_count
               FROM energy_usage u JOIN households h ON h.id = u.household_id
               JOIN energy_types et ON et.label_ko = u.energy_type""").fetchall()
    return {(d, m, mo.isoformat()): (Decimal(a).normalize(), n) for d, m, mo, a, n in rows}


Totals = dict[tuple[str, str, str], tuple[Decimal, int]]


def normalised(ledger: Totals) -> Totals:
    return {k: (v[0].normalize(), v[1]) for k, v in ledger.items()}


def stored_count(settings: Settings) -> int:
    with connect(settings) as conn:
        return int(conn.execute("SELECT count(*) FROM meter_readings").fetchone()[0])  # type: ignore[index]


def produce(settings: Settings, payloads: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(KafkaClient.from_settings(settings, "admin").config(**{"linger.ms": 20}))
    for key, value in payloads:
        producer.produce(settings.kafka.readings_topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0


def test_monthly_usage_equals_the_ledger_exactly_and_replays_change_nothing(
        settings: Settings, job_factory: Callable[[Settings], StreamJob], tmp_path: Path) -> None:
    start = datetime(2024, 1, 20, tzinfo=UTC)
    ledger_path = tmp_path / "ledger.json"
    bridge = Bridge.from_settings(settings)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    job = job_factory(settings)
    try:
        wait_for(lambda: bridge.source.connected, 10, "bridge")
        fleet = Fleet.from_settings(settings, settings.complex.households()[:8],
                      FleetOptions(start=start, until=start + timedelta(days=20), interval_s=3600,
                                   ledger_path=ledger_path))
        fleet.run()
        ledger = Ledger.read(ledger_path)
        want = sum(n for _, n in ledger.values())
        assert want == 8 * 20 * 24 * 3
        wait_for(lambda: stored_count(settings) == want, 120, "every reading stored")
        wait_for(job.idle, 30, "job idle")
        assert db_totals(settings) == normalised(ledger)
        assert {m for _, _, m in ledger} == {"2024-01-01", "2024-02-01"}

        # the same readings a second time (a replay, a duplicating producer): nothing changes
        again = consume(settings, settings.kafka.readings_topic, until=want, timeout=60)
        rows_before = job.stats.rows
        produce(settings, [(m.key(), m.value()) for m in again])
        wait_for(lambda: job.stats.rows >= rows_before + want, 120, "replayed readings processed")
        assert db_totals(settings) == normalised(ledger)
        assert stored_count(settings) == want
    finally:
        bridge.stop()
        thread.join(30)

    with connect(settings) as conn:
        # emission = amount × the factor in force, as stored
        for amount, emission, factor in conn.execute(
                """SELECT u.amount_exact, u.emission, f.factor FROM energy_usage u
                   JOIN energy_types et ON et.label_ko = u.energy_type
                   JOIN emission_factors f ON f.energy_type = et.key""").fetchall():
            assert emission == float(amount * factor)
        devices = conn.execute("SELECT device_id, state, firmware, household_id IS NOT NULL FROM devices").fetchall()
    assert len(devices) == 8
    assert all(state == "offline" and fw == settings.simulation.firmware and linked for _, state, fw, linked in devices)


def reading(device: str, meter: str, seq: int, ts: datetime, value: float, unit: str = "") -> Reading:
    units = {"electricity": "kWh", "heating": "Mcal", "water": "m³"}
    return Reading(device, meter, seq, ts, 3600, value, value, unit or units.get(meter, "kWh"))


def test_late_data_factor_changes_and_bad_input_are_handled(
        settings: Settings, job_factory: Callable[[Settings], StreamJob]) -> None:
    dev = settings.complex.households()[0].device_id
    feb = datetime(2024, 2, 10, tzinfo=UTC)
    with connect(settings, role="owner") as conn:  # factors are reference data: the owner's to change
        conn.execute("INSERT INTO emission_factors VALUES ('electricity', '2024-02-01', 0.5, 'kg CO2e/kWh', 'test')")
        conn.commit()
    good = [reading(dev, "electricity", i, feb + timedelta(hours=i), 1.5) for i in range(5)]
    late = reading(dev, "electricity", 99, datetime(2024, 1, 15, tzinfo=UTC), 2.25)   # last month, arriving late
    bad = {
        b"{not json": "not_json: Expecting property name enclosed in double quotes at 1",
        json.dumps({**good[0].to_dict(), "seq": 7, "value": -1}).encode(): "negative: value is negative",
        json.dumps({**good[0].to_dict(), "seq": 8, "meter": "gas"}).encode(): "unknown_meter: gas",
        json.dumps({**good[0].to_dict(), "device_id": "nobody-99-9999"}).encode(): "unknown device nobody-99-9999",
        json.dumps({k: v for k, v in good[0].to_dict().items() if k != "ts"}).encode(): "missing_field: ts",
        good[0].to_json().replace(b'"value":1.5', b'"value":NaN'): "not_finite: NaN",
        json.dumps({**good[0].to_dict(), "ts": "2999-01-01T00:00:00Z"}).encode(): "ts_in_future: more than 3600s ahead",
    }
    job = job_factory(settings)
    produce(settings, [(dev.encode(), r.to_json()) for r in good] + [(b"x", p) for p in bad])
    wait_for(lambda: job.stats.rows >= len(good) + len(bad), 90, "first batch")
    produce(settings, [(dev.encode(), late.to_json())])
    wait_for(lambda: stored_count(settings) == 6, 60, "late reading")
    with connect(settings) as conn:
        usage = {m.isoformat(): (float(a), e, n) for m, a, e, n in conn.execute(
            "SELECT usage_date, amount_exact, emission, reading_count FROM energy_usage ORDER BY 1").fetchall()}
        quarantined = dict(conn.execute("SELECT raw_payload, reason FROM quarantine").fetchall())
    assert usage == {"2024-01-01": (2.25, 2.25 * 0.4747, 1), "2024-02-01": (7.5, 7.5 * 0.5, 5)}
    assert {p.decode(): r for p, r in bad.items()} == quarantined


def test_job_killed_mid_stream_and_restarted_stays_exact(settings: Settings, tmp_path: Path) -> None:
    households = settings.complex.households()[:20]
    start = datetime(2024, 3, 1, tzinfo=UTC)
    readings = [reading(h.device_id, m, i, start + timedelta(hours=i + 1), round(0.1 + (i % 7) * 0.013, 3))
                for h in households for m in ("electricity", "water") for i in range(500)]
    produce(settings, [(r.device_id.encode(), r.to_json()) for r in readings])
    env = {**env_for(settings), "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           "APT_ENERGY_SPARK_MAX_OFFSETS_PER_TRIGGER": "2000", "APT_ENERGY_SPARK_TRIGGER_S": "0.5"}
    argv = [sys.executable, "-m", "apt_energy.spark", "--no-notifier"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: stored_count(settings) > 2000, 120, "the first batches")
        first.kill()
        first.wait(20)
        partial = stored_count(settings)
        assert partial < len(readings)
    finally:
        first.kill()
    second = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: stored_count(settings) == len(readings), 180, "every reading after the restart")
        time.sleep(3)  # any replayed batch would have landed by now
    finally:
        second.terminate()
        second.wait(60)
    expected: dict[tuple[str, str, str], tuple[Decimal, int]] = {}
    for r in readings:
        key = (r.device_id, r.meter, usage_month(r.ts, settings.complex.tz).isoformat())
        total, n = expected.get(key, (Decimal(0), 0))
        expected[key] = (total + exact(r.value), n + 1)
    assert db_totals(settings) == normalised(expected)
    assert second.returncode == 0  # SIGTERM stops it cleanly


def test_the_job_exits_non_zero_naming_the_query_when_its_readings_query_dies(settings: Settings,
                                                                            tmp_path: Path) -> None:
    with connect(settings, role="owner") as conn:   # every readings batch now fails outright
        conn.execute("DROP TABLE reading_staging")
        conn.commit()
    h = settings.complex.households()[0]
    produce(settings, [(h.device_id.encode(),
                        reading(h.device_id, "electricity", 0, datetime(2024, 3, 1, 1, tzinfo=UTC), 0.5).to_json())])
    env = {**env_for(settings), "APT_ENERGY_SPARK_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
           "APT_ENERGY_SPARK_TRIGGER_S": "0.5"}
    job = subprocess.run([sys.executable, "-m", "apt_energy.spark", "--no-notifier"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 1
    assert "query readings died" in job.stderr
