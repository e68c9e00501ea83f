"""Soak: simulated days at a fixed real rate through the supervised pipeline, with a Kafka outage and a
broker restart in the middle, ending in the ledger truth check and a table of each process's growth.

Short by default (CI: ~1 min of traffic, a 20 s Kafka outage); ``make soak`` runs it for real
(``APT_ENERGY_SOAK_MINUTES=25``, a 4-minute outage). What it catches that the chaos suite cannot: a leak
(RSS or file descriptors that grow with time), state that grows without bound (the broker's database),
logs that are not rotated, and recovery from an outage long enough for every backoff to reach its cap.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apt_energy.app.truth import check, read_ledger
from apt_energy.edge.fleet import Fleet, FleetOptions
from apt_energy.stack import NativeStack
from apt_energy.stack.process import read_pid

from tests.chaos.harness import Chaos, dead_letters, quarantined, settle

pytestmark = [pytest.mark.integration, pytest.mark.soak]

MINUTES = float(os.environ.get("APT_ENERGY_SOAK_MINUTES", "1"))
OUTAGE_S = float(os.environ.get("APT_ENERGY_SOAK_OUTAGE_S", "240" if MINUTES >= 10 else "20"))
HOUSEHOLDS = int(os.environ.get("APT_ENERGY_SOAK_HOUSEHOLDS", "40"))
SETTLE_S = 600.0              # longest wait for the stored totals to equal the ledger after the run
SIM_HOURS_PER_S = 1.0          # the fixed real rate: one simulated hour per second, every household hourly
START = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Usage:
    rss_kb: int
    fds: int


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def usage(pid: int | None) -> Usage:
    """RSS and open descriptors of ``pid`` and its descendants (the Spark job's JVM is a child)."""
    if pid is None:
        return Usage(0, 0)
    rss = fds = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            rss += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
            fds += len(os.listdir(f"/proc/{p}/fd"))
        except (OSError, StopIteration):
            continue
        todo += _children(p)
    return Usage(rss, fds)


def size_mb(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


def snapshot(chaos: Chaos, stack: NativeStack) -> dict[str, str]:
    services = chaos.services()
    rows: dict[str, str] = {}
    pids = {name: r.pid for name, r in services.items()}
    pids["supervisor+all"] = read_pid(chaos.directory / "supervisor.pid")   # its tree: every service
    pids.update({s.name: s.pid for s in stack.status()})   # mosquitto, postgresql, kafka
    for name, pid in pids.items():
        u = usage(pid)
        rows[f"{name} RSS MB"] = f"{u.rss_kb / 1024:.0f}"
        rows[f"{name} open FDs"] = str(u.fds)
    rows["broker DB MB"] = f"{size_mb([stack.mosquitto.dir / 'data' / 'mosquitto.db']):.2f}"
    rows["pipeline logs MB"] = f"{size_mb(sorted(chaos.directory.glob('*.log*'))):.2f}"
    rows["broker log MB"] = f"{size_mb([stack.mosquitto.log_file]):.2f}"
    return rows


def restart_kafka(stack: NativeStack, attempts: int = 5) -> None:
    """Kafka back after the outage. Seen once in a 15-min soak: while Kafka was down minutes, its controller
    port (in the ephemeral range) was taken by some outgoing connection on this shared machine, and the
    restart failed to bind; it is free again seconds later."""
    from apt_energy.core.errors import ServiceError

    for attempt in range(1, attempts + 1):
        try:
            stack.kafka.up()
            return
        except ServiceError:
            if attempt == attempts:
                raise
            stack.kafka.down()
            time.sleep(10)


def test_soak_with_a_kafka_outage_and_a_broker_restart(chaos: Chaos, native_stack: NativeStack,
                                                       tmp_path: Path) -> None:
    run_s = MINUTES * 60
    hours = int(run_s * SIM_HOURS_PER_S)
    households = chaos.households[chaos.used:chaos.used + HOUSEHOLDS]
    chaos.used += HOUSEHOLDS
    ledger_path = tmp_path / "ledger.json"
    began = time.monotonic()
    start = snapshot(chaos, native_stack)
    quarantine_before, dead_before = quarantined(chaos.settings), dead_letters(chaos.settings)
    restarts_before = {k: r.restarts for k, r in chaos.services().items()}
    fleet = Fleet.from_settings(chaos.settings, households, FleetOptions(
        start=START, until=START + timedelta(hours=hours), interval_s=3600, speed=3600 * SIM_HOURS_PER_S,
        ledger_path=ledger_path, state_path=tmp_path / "edge-state.json", progress_s=3600.0,
        drain_timeout_s=OUTAGE_S + 300))
    thread = threading.Thread(target=fleet.run, name="soak-fleet", daemon=True)
    thread.start()
    time.sleep(run_s * 0.25)
    native_stack.kafka.down()                       # the bridge stops acking; the broker queues for it
    time.sleep(OUTAGE_S)
    restart_kafka(native_stack)
    time.sleep(max(0.0, began + run_s * 0.7 - time.monotonic()))
    native_stack.mosquitto.down()                   # SIGTERM: it saves; the sessions come back after
    time.sleep(2)
    native_stack.mosquitto.up()
    thread.join(run_s + OUTAGE_S + 600)
    assert not thread.is_alive(), "the fleet did not finish"
    ledger = read_ledger(ledger_path)
    truth = settle(chaos, ledger, restarts_before)
    # After a Kafka outage the stream job's first batch can wait minutes on offset lookups (seen: 138 s
    # after a 20 s outage): the chaos suite's "quiet for 20 s" is not an end here. Wait for the ledger.
    deadline = time.monotonic() + SETTLE_S
    while not truth.ok and time.monotonic() < deadline:
        time.sleep(5)
        truth = check(chaos.settings, ledger, only_ledger_devices=True)
    end = snapshot(chaos, native_stack)
    restarts = {k: r.restarts - restarts_before.get(k, 0) for k, r in chaos.services().items()}
    lines = [f"soak: {hours:,} simulated hours x {len(households)} households in {time.monotonic() - began:.0f} s "
             f"real; Kafka outage {OUTAGE_S:.0f} s at 25 %, broker restart at 70 %",
             f"truth check: {truth.readings:,} readings, lost {truth.lost}, doubled {truth.doubled}, "
             f"quarantined {quarantined(chaos.settings) - quarantine_before}, "
             f"dead-lettered {dead_letters(chaos.settings) - dead_before}; restarts {restarts}",
             f"{'':<22}{'start':>10}{'end':>10}"]
    lines += [f"{key:<22}{start[key]:>10}{end.get(key, '-'):>10}" for key in start]
    report = "\n".join(lines)
    print("\n" + report)
    (native_stack.settings.run_dir / "soak-report.txt").write_text(report + "\n")
    assert truth.ok, report
    assert truth.lost == 0 and truth.doubled == 0
    assert all(r.state == "running" for r in chaos.services().values()), report
