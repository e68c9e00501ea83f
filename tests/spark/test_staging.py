"""The executors' one pass over raw Kafka records: the contract's verdict, the clock window, the local
month — the same as ``transforms.parse_readings`` gives (pure: no JVM, no database)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from apt_energy.core.contract import Reading, exact, validate_reading
from apt_energy.spark.staging import (
    KAFKA_COLUMNS,
    STAGED_COLUMNS,
    BatchKey,
    PartitionStager,
    RecordCheck,
    StagedRow,
    as_tuple,
    quarantined,
    raw_text,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.core.test_canonical import mutated, renumbered
from tests.spark.test_transforms import EDGES, GOOD, HOSTILE, NOW, UNITS, with_

pytestmark = pytest.mark.unit

CHECK = RecordCheck(units=UNITS, timezone="Asia/Seoul", max_future_s=3600, max_past_days=3650)


def staged(payload: bytes | None, offset: int = 0) -> dict[str, object]:
    row = CHECK.row(1, 2, payload, "readings", 0, offset, 1234, now=NOW)
    assert len(row) == len(STAGED_COLUMNS)
    return dict(zip(STAGED_COLUMNS, row, strict=True))


def test_the_executors_reject_exactly_what_the_contract_rejects_with_the_same_reason() -> None:
    for i, payload in enumerate(HOSTILE):
        row = staged(payload, i)
        assert row["reason"] == str(validate_reading(payload, units=UNITS)), payload[:80]
        assert row["device_id"] is None and row["value"] is None
        assert row["raw"] == payload.decode(errors="replace").replace("\x00", "\ufffd")
        assert (row["stream_id"], row["batch_id"], row["kafka_offset"], row["received_ms"]) == (1, 2, i, 1234)


def test_good_and_nearly_good_readings_get_the_validators_verdict_and_exact_values() -> None:
    for payload in EDGES:
        row, expected = staged(payload), validate_reading(payload, units=UNITS)
        if isinstance(expected, Reading):
            assert row["reason"] is None, (payload, row["reason"])
            assert (row["device_id"], row["meter"], row["life"], row["seq"], row["unit"], row["ts"]) == (
                expected.device_id, expected.meter, expected.life, expected.seq, expected.unit, expected.ts)
            # COPY sends a float as its shortest repr: the decimal the JSON wrote
            assert Decimal(repr(row["value"])) == exact(expected.value)
        else:
            assert row["reason"] == str(expected), payload


def test_a_reading_counts_in_the_local_month_of_its_last_instant() -> None:
    assert staged(GOOD.to_json())["usage_month"].isoformat() == "2024-01-01"  # type: ignore[union-attr]
    later = dataclasses.replace(GOOD, ts=GOOD.ts + timedelta(hours=1))   # ends after midnight in Seoul
    assert staged(later.to_json())["usage_month"].isoformat() == "2024-02-01"  # type: ignore[union-attr]


@pytest.mark.parametrize(("ts", "reason"), [
    ("2024-06-01T02:00:01Z", "ts_in_future: more than 3600s ahead"),
    ("2010-01-01T00:00:00Z", "ts_too_old: more than 3650 days old"),
])
def test_readings_outside_the_clock_window_keep_their_fields_and_get_the_contract_reason(ts: str,
                                                                                         reason: str) -> None:
    row = staged(with_(ts=ts))
    assert row["reason"] == reason and row["device_id"] == GOOD.device_id


def test_a_partition_arrives_as_arrow_batches_and_leaves_as_staged_rows() -> None:
    records = [GOOD.to_json(), b"{not json", None]
    batch = pa.record_batch([pa.array(records, pa.binary()), pa.array(["readings"] * 3),
                             pa.array([0, 0, 1], pa.int32()), pa.array([5, 6, 7], pa.int64()),
                             pa.array([None, 1, 2], pa.int64())], names=list(KAFKA_COLUMNS))
    stager = PartitionStager("", CHECK, BatchKey(7, 8), NOW)
    rows = [typed(r) for r in stager.rows([batch, batch.slice(0, 1)])]
    assert [(r["stream_id"], r["batch_id"], r["kafka_offset"], r["reason"] is None) for r in rows] == [
        (7, 8, 5, True), (7, 8, 6, False), (7, 8, 7, False), (7, 8, 5, True)]
    assert rows[2]["raw"] is None


_INTEGERS = {"stream_id", "batch_id", "life", "seq", "interval_s", "kafka_partition", "kafka_offset", "received_ms"}


def typed(staged: StagedRow) -> dict[str, Any]:
    """A staged row as the values PostgreSQL stores (a COPY line's cells are text)."""
    out: dict[str, Any] = {}
    for name, v in zip(STAGED_COLUMNS, as_tuple(staged), strict=True):
        if v is None or not isinstance(v, str) or name in ("device_id", "meter", "unit", "topic", "reason", "raw"):
            out[name] = Decimal(repr(v)) if isinstance(v, float) else v
        elif name in _INTEGERS:
            out[name] = int(v)
        elif name == "ts":
            out[name] = datetime.fromisoformat(v)
        elif name == "usage_month":
            out[name] = date.fromisoformat(v)
        else:
            out[name] = Decimal(v)
    return out


def test_a_canonical_reading_becomes_a_copy_line_others_a_row() -> None:
    judge = CHECK.judge(NOW)
    assert type(judge.line(1, 2, GOOD.to_json(), "readings", 0, 1, None)) is bytes
    assert type(judge.line(1, 2, GOOD.to_json(), "read\tings", 0, 1, None)) is tuple   # a topic COPY must escape
    assert type(judge.line(1, 2, GOOD.to_json().replace(b",", b", "), "readings", 0, 1, None)) is tuple


# canonical readings at and just past both edges of the clock window (3600 s ahead, 3650 days back)
WINDOW_EDGES = [dataclasses.replace(GOOD, ts=NOW + delta).to_json() for delta in (
    timedelta(seconds=3600), timedelta(seconds=3600, microseconds=1), -timedelta(days=3650),
    -timedelta(days=3650, microseconds=1))]


@pytest.mark.parametrize("payload", WINDOW_EDGES)
def test_a_copy_line_judges_the_clock_windows_edges_as_the_row_does(payload: bytes) -> None:
    judge = CHECK.judge(NOW)
    line = judge.line(5, 6, payload, "readings", 0, 1, None)
    assert type(line) is bytes and typed(line) == typed(judge.row(5, 6, payload, "readings", 0, 1, None))


STAGE_ANY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@STAGE_ANY
@given(st.one_of(mutated, renumbered, st.sampled_from([*HOSTILE, *EDGES, *WINDOW_EDGES, GOOD.to_json(), None])),
       st.sampled_from(["readings", "apt.readings", "bad\ttopic"]), st.integers(0, 2**31 - 1),
       st.integers(0, 2**63 - 1), st.none() | st.integers(0, 2**62), st.sampled_from([NOW, datetime(2100, 1, 1,
                                                                                           tzinfo=NOW.tzinfo)]))
def test_a_copy_line_stores_exactly_what_the_validators_row_stores(payload: bytes | None, topic: str, partition: int,
                                                                   offset: int, received: int | None,
                                                                   now: datetime) -> None:
    judge = CHECK.judge(now)
    assert typed(judge.line(5, 6, payload, topic, partition, offset, received)) == typed(
        judge.row(5, 6, payload, topic, partition, offset, received))


def test_a_refused_row_keeps_only_its_key_coordinates_payload_and_a_reason() -> None:
    row = CHECK.row(1, 2, with_(unit="m\u0000"), "readings", 3, 4, 5, now=NOW)
    good = CHECK.row(1, 2, GOOD.to_json(), "read\x00ings", 3, 4, 5, now=NOW)
    q = dict(zip(STAGED_COLUMNS, quarantined(good, "invalid byte sequence"), strict=True))
    assert q["reason"] == "invalid byte sequence" and q["topic"] == "read\ufffdings"
    assert q["device_id"] == GOOD.device_id and q["value"] is None and q["kafka_offset"] == 4
    assert dict(zip(STAGED_COLUMNS, quarantined(row, "db"), strict=True))["reason"] == str(
        validate_reading(with_(unit="m\u0000"), units=UNITS))


def test_raw_text_is_storable() -> None:
    assert raw_text(b"a\x00\xffb") == "a\ufffd\ufffdb"
    assert raw_text(None) is None


def test_a_refused_copy_line_becomes_the_same_quarantine_entry_as_its_row() -> None:
    judge = CHECK.judge(NOW)
    line = judge.line(1, 2, GOOD.to_json(), "readings", 3, 4, 5)
    assert type(line) is bytes
    assert typed(quarantined(line, "db said no")) == typed(quarantined(
        judge.row(1, 2, GOOD.to_json(), "readings", 3, 4, 5), "db said no"))
