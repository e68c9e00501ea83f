"""A crash-safe edge without a broker: checkpoint, journal and ledger after a kill -9 (simulated by dropping
the fleet without its shutdown, and by cutting files at every byte)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from apt_energy.core.contract import Reading, exact
from apt_energy.edge import Fleet, FleetOptions, Ledger
from apt_energy.edge.ledger import merge_ranges
from apt_energy.edge.state import Journal, Register, SavedDevice, journal_path, load_state, replay, save_state
from hypothesis import given
from hypothesis import strategies as st

from apt_energy import config

pytestmark = pytest.mark.unit

SETTINGS = config.load(environ={})
START = datetime(2024, 1, 31, 12, tzinfo=UTC)   # crosses a local month boundary (Feb 1 00:00 KST = 15:00Z)
METERS = tuple(SETTINGS.energy)


def options(tmp_path: Path, hours: int = 12, **kw: object) -> FleetOptions:
    return FleetOptions(start=START, until=START + timedelta(hours=hours), interval_s=3600,
                        ledger_path=tmp_path / "ledger.json", state_path=tmp_path / "state.json",
                        **kw)  # type: ignore[arg-type]


def fleet(tmp_path: Path, n: int = 3, **kw: object) -> Fleet:
    return Fleet.from_settings(SETTINGS, SETTINGS.complex.households()[:n], options(tmp_path, **kw))


def ack(f: Fleet, count: int) -> list[Reading]:
    """The broker acknowledges the ``count`` oldest buffered readings of every device."""
    acked = []
    for d in f.devices:
        for _ in range(min(count, len(d.buffer))):
            reading = d.buffer.popleft()
            f._on_ack(reading)
            acked.append(reading)
    return acked


def crash(f: Fleet) -> None:
    """kill -9: no shutdown, no final checkpoint; only what was written to the files survives."""
    assert f.journal is not None
    f.journal.close()
    f.ledger.close()


def identities(readings: list[Reading]) -> set[tuple[str, str, int, int]]:
    return {(r.device_id, r.meter, r.life, r.seq) for r in readings}


def intervals(readings: list[Reading]) -> list[tuple[str, str, datetime]]:
    return sorted((r.device_id, r.meter, r.ts) for r in readings)


@pytest.mark.parametrize("checkpoint_after", [0, 2, 5])
def test_a_restart_after_kill_9_resumes_after_the_last_interval_and_re_sends_only_the_unacknowledged(
        tmp_path: Path, checkpoint_after: int) -> None:
    first = fleet(tmp_path)
    for hour in range(7):
        first._tick()
        if hour == checkpoint_after:
            first._checkpoint()
        if hour == 3:
            acked = ack(first, 8)
            first.ledger.flush()
    acked += ack(first, 2)          # acknowledged, but the ledger never flushed them: unknown after the crash
    unflushed = acked[-2 * len(first.devices):]
    buffered = [r for d in first.devices for r in d.buffer]
    crash(first)

    second = fleet(tmp_path)
    assert second.sim_time == START + timedelta(hours=7)      # none generated twice, none skipped
    resent = [r for d in second.devices for r in d.buffer]
    assert second.resumed == len(resent)
    assert identities(resent) == identities(buffered) | identities(unflushed)   # with their identity
    while second.sim_time < second.options.until:
        second._tick()
    # every interval of the run exactly once over what the broker got, every seq continuing its meter
    everything = [r for r in acked if r not in unflushed] + [r for d in second.devices for r in d.buffer]
    assert intervals(everything) == sorted((h.device_id, m, START + timedelta(hours=k))
                                           for h in SETTINGS.complex.households()[:3] for m in METERS
                                           for k in range(1, 13))
    for d in second.devices:
        for m in METERS:
            seqs = sorted(r.seq for r in everything if r.device_id == d.device_id and r.meter == m)
            assert seqs == list(range(12))
            total = sum((exact(r.value) for r in everything if r.device_id == d.device_id and r.meter == m),
                        Decimal(0))
            last = max((r for r in everything if r.device_id == d.device_id and r.meter == m), key=lambda r: r.seq)
            assert exact(last.total) == total          # the register carried on through the crash


def test_the_ledger_after_kill_9_holds_every_flushed_acknowledgement_and_a_clean_stop_writes_json(
        tmp_path: Path) -> None:
    first = fleet(tmp_path)
    for _ in range(4):
        first._tick()
    acked = ack(first, 3)
    first.ledger.flush()
    crash(first)
    assert sum(c for _, c in Ledger.read(tmp_path / "ledger.json").values()) == len(acked)
    second = fleet(tmp_path)
    more = ack(second, 100)
    second.ledger.write(tmp_path / "ledger.json")
    doc = json.loads((tmp_path / "ledger.json").read_text())    # one JSON document again, as before
    assert sum(r["count"] for r in doc["rows"]) == len(acked) + len(more) == 4 * 3 * 3


def test_a_ledger_cut_at_any_byte_reads_as_its_whole_lines(tmp_path: Path) -> None:
    ledger = Ledger(SETTINGS.complex.tz)
    path = tmp_path / "ledger.json"
    ledger.open_append(path)
    counts = []
    for batch in range(4):
        for seq in range(batch * 5, batch * 5 + 5):
            ledger.record(Reading("hanbit-01-101", "water", seq, START + timedelta(hours=seq + 1), 3600, 0.001,
                                  0.001 * (seq + 1), "m³", life=7))
        ledger.flush()
        counts.append(path.stat().st_size)
    ledger.close()
    data = path.read_bytes()
    for cut in range(len(data) + 1):
        (tmp_path / "cut.json").write_bytes(data[:cut])
        got = sum(c for _, c in Ledger.read(tmp_path / "cut.json").values())
        assert got == 5 * sum(1 for size in counts if size - 1 <= cut)   # whole once its "}" is written
    again = Ledger(SETTINGS.complex.tz)
    again.load(path)
    assert again.acknowledged() == {("hanbit-01-101", "water", 7): [[0, 19]]}


def test_a_journal_cut_at_any_byte_restores_only_whole_intervals(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    save_state(state, {"d": SavedDevice(5, {"water": Register(10, 100, 5)}, at=START)})
    journal = Journal(journal_path(state))
    ends = []
    for k in range(1, 4):
        end = START + timedelta(hours=k)
        journal.append(end, [(Reading("d", "water", 9 + k, end, 3600, 0.5, 0.1 + k, "m³", life=5), 100 + k)], {})
        ends.append(journal_path(state).stat().st_size)
    journal.close()
    data = journal_path(state).read_bytes()
    for cut in range(len(data) + 1):
        journal_path(state).write_bytes(data[:cut])
        whole = sum(1 for size in ends if size - 1 <= cut)
        saved = load_state(state)["d"]
        assert saved.at == START + timedelta(hours=whole)
        assert [r.seq for r in saved.pending] == list(range(10, 10 + whole))
        assert saved.registers["water"].seq == 10 + whole
        assert saved.registers["water"].total_units == (100 + whole if whole else 100)


def test_journal_lines_before_the_checkpoint_are_not_replayed(tmp_path: Path) -> None:
    # the process died between writing the checkpoint and emptying the journal
    devices = {"d": SavedDevice(5, {"water": Register(12, 100, 5)}, at=START + timedelta(hours=2))}
    path = tmp_path / "j"
    journal = Journal(path)
    for k in (1, 2):
        end = START + timedelta(hours=k)
        journal.append(end, [(Reading("d", "water", 9 + k, end, 3600, 0.5, 1.0, "m³", life=5), 100)], {})
    journal.close()
    assert replay(devices, path) == 0 and devices["d"].registers["water"].seq == 12


def test_a_format_3_state_round_trips(tmp_path: Path) -> None:
    since = START + timedelta(days=3)
    pending = [Reading("d", "water", 3, START, 3600, 0.25, 1.5, "m³", life=9)]
    saved = SavedDevice(5, {"water": Register(4, 1500, 9, "W-1", since), "heating": Register(1, 2, 5)},
                        at=START, interval_s=7200, accum=[1.0, 2.0, 3.0], accum_ticks=1, pending=pending,
                        active=[{"kind": "leak", "meter": "water", "hours": 2.0, "factor": 1.0, "flow": 0.01,
                                 "until": "2024-02-01T00:00:00Z"}])
    save_state(tmp_path / "state.json", {"d": saved})
    assert load_state(tmp_path / "state.json") == {"d": saved}


def test_a_format_2_state_resumes_at_start_with_its_seqs(tmp_path: Path) -> None:
    h = SETTINGS.complex.households()[0]
    (tmp_path / "state.json").write_text(json.dumps({"format": 2, "devices": {
        h.device_id: {"life": 77, "meters": {m: [1000, 5] for m in METERS}}}}))
    f = fleet(tmp_path, n=1)
    f._tick()
    assert f.sim_time == START + timedelta(hours=1)
    assert {(r.life, r.seq) for r in f.devices[0].buffer} == {(77, 1000)}


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5)), max_size=30))
def test_merged_ranges_cover_the_same_seqs(pairs: list[tuple[int, int]]) -> None:
    ranges = [[a, a + n] for a, n in pairs]
    merged = merge_ranges(ranges)
    assert {s for a, b in merged for s in range(a, b + 1)} == {s for a, b in ranges for s in range(a, b + 1)}
    assert all(merged[i][1] + 1 < merged[i + 1][0] for i in range(len(merged) - 1))
