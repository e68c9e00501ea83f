"""The supervisor's restart policy and status table (pure), and its restart loop on throwaway children."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from apt_energy.app.supervise import (
    RestartPolicy,
    ServiceRecord,
    ServiceSpec,
    Supervisor,
    describe_exit,
    format_table,
    read_state,
    restart_delay,
)

POLICY = RestartPolicy(base_s=1.0, cap_s=8.0, max_crashes=5, window_s=60.0)


@pytest.mark.unit
def test_backoff_doubles_with_each_recent_crash_up_to_the_cap() -> None:
    delays = [restart_delay([100.0] * n, 100.0, POLICY) for n in range(1, 5)]
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay([100.0] * 4, 100.0, RestartPolicy(base_s=1.0, cap_s=3.0, max_crashes=9)) == 3.0


@pytest.mark.unit
def test_max_crashes_within_the_window_is_a_crash_loop() -> None:
    assert restart_delay([10.0, 20.0, 30.0, 40.0, 50.0], 50.0, POLICY) is None


@pytest.mark.unit
def test_crashes_older_than_the_window_are_forgiven() -> None:
    # four old crashes and one now: only the one counts, so the backoff starts over
    assert restart_delay([0.0, 1.0, 2.0, 3.0, 100.0], 100.0, POLICY) == 1.0


@pytest.mark.unit
@pytest.mark.parametrize("bad", [{"base_s": 0}, {"cap_s": 0.5}, {"max_crashes": 0}, {"window_s": 0}])
def test_a_nonsensical_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="restart policy"):
        RestartPolicy(**bad)  # type: ignore[arg-type]


@pytest.mark.unit
def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(3) == "exit 3"
    assert describe_exit(-9) == "signal 9 (SIGKILL)"


@pytest.mark.unit
def test_status_table_shows_pid_state_restarts_uptime_last_exit_and_the_crash_loop_note() -> None:
    records = [
        ServiceRecord("spark", "/r/spark.log", [], state="running", pid=41, started_at=1000.0),
        ServiceRecord("bridge", "/r/bridge.log", [], state="running", pid=42, restarts=2, started_at=1175.0,
                      last_exit="signal 9 (SIGKILL)"),
        ServiceRecord("notifier", "/r/notifier.log", [], state="crash-loop", restarts=4, last_exit="exit 1",
                      note="crashed 5 times within 120s (last: exit 1); not restarting it; see /r/notifier.log"),
    ]
    lines = format_table(records, now=1200.0).splitlines()
    assert lines[0].split() == ["service", "pid", "state", "restarts", "uptime", "last", "exit"]
    assert lines[1].split() == ["spark", "41", "running", "0", "3m20s", "-"]
    assert lines[2].split() == ["bridge", "42", "running", "2", "25s", "signal", "9", "(SIGKILL)"]
    assert lines[3].split() == ["notifier", "-", "crash-loop", "4", "-", "exit", "1"]
    assert lines[4] == "notifier: crashed 5 times within 120s (last: exit 1); not restarting it; see /r/notifier.log"


def _supervise(tmp_path: Path, specs: list[ServiceSpec], policy: RestartPolicy,
               until: str) -> list[ServiceRecord]:
    state = tmp_path / "state.json"
    sup = Supervisor(specs, state_file=state, policy=policy, stop_timeout_s=5)
    thread = threading.Thread(target=sup.run)
    thread.start()
    try:
        done = threading.Event()
        for _ in range(200):
            _, records = read_state(state)
            if any(r.state == until for r in records):
                done.set()
                break
            done.wait(0.05)
        assert done.is_set(), read_state(state)
    finally:
        sup.stop()
        thread.join(30)
    return read_state(state)[1]


def test_a_service_that_keeps_crashing_is_given_up_on_and_named_with_its_log(tmp_path: Path) -> None:
    crash = ServiceSpec("flaky", (sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"),
                        tmp_path / "flaky.log")
    records = _supervise(tmp_path, [crash], RestartPolicy(base_s=0.01, cap_s=0.02, max_crashes=3, window_s=60),
                         until="crash-loop")
    (r,) = records
    assert (r.state, r.restarts, r.last_exit) == ("crash-loop", 2, "exit 3")
    assert r.note == f"crashed 3 times within 60s (last: exit 3); not restarting it; see {tmp_path / 'flaky.log'}"
    assert (tmp_path / "flaky.log").read_text().count("boom") == 3


def test_stopping_terminates_the_children_and_records_them_stopped(tmp_path: Path) -> None:
    sleeper = ServiceSpec("sleeper", (sys.executable, "-c", "import time; time.sleep(600)"), tmp_path / "s.log")
    _supervise(tmp_path, [sleeper], RestartPolicy(), until="running")
    (r,) = read_state(tmp_path / "state.json")[1]
    assert (r.state, r.pid, r.last_exit) == ("stopped", None, "signal 15 (SIGTERM)")


@pytest.mark.unit
def test_a_log_over_its_size_is_rotated_and_its_writer_keeps_appending(tmp_path: Path) -> None:
    from apt_energy.app.supervise import LogRotation, rotate_log

    log = tmp_path / "bridge.log"
    rotation = LogRotation(max_bytes=4096, keep=2)
    with open(log, "ab", buffering=0) as writer:        # the child's descriptor, held across rotations
        for round_ in range(4):
            writer.write(f"round {round_}\n".encode() + b"x" * 5000 + b"\n")
            assert rotate_log(log, rotation)
            assert log.stat().st_size == 0
            writer.write(b"after\n")                    # O_APPEND: lands at the start of the emptied file
            assert log.read_bytes() == b"after\n"
    assert not rotate_log(log, rotation)                # under the size: left alone
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["bridge.log", "bridge.log.1", "bridge.log.2"]   # keep=2: the oldest rounds are dropped
    assert (tmp_path / "bridge.log.1").read_bytes().startswith(b"after\nround 3")
    assert (tmp_path / "bridge.log.2").read_bytes().startswith(b"after\nround 2")


@pytest.mark.unit
def test_a_rotation_below_a_kilobyte_or_keeping_nothing_is_refused() -> None:
    from apt_energy.app.supervise import LogRotation

    for bad in ({"max_bytes": 100}, {"keep": 0}):
        with pytest.raises(ValueError, match="log rotation"):
            LogRotation(**bad)  # type: ignore[arg-type]
