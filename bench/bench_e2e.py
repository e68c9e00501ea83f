"""End to end: edge fleet → Mosquitto → bridge → Kafka → Spark stream job → PostgreSQL, readings/s and exactness.

Like ``apt-energy demo`` (whose pieces it uses), on the native stack: the pipeline's data is reset, the
Spark job and the bridge start under the pipeline supervisor, and the fleet runs in this process at a
6 h interval. Spark is warmed first (a few malformed readings must reach the quarantine table), so the
clock measures the pipeline, not the JVM's start: it runs from the fleet's start until the database holds
every reading the broker acknowledged; then the database is checked against the fleet's ledger
(:mod:`apt_energy.app.truth`, exact decimals per household, meter and month).

Same-run baseline, stated: the same fleet (same households, months and interval) publishing into
Mosquitto alone, under a topic nobody subscribes to — the first stage's own rate; the ratio says how
much of it survives the whole chain. A subset of the year (default 840 households × 3 months: a
shorter run is mostly the JVM's warm-up) keeps the run near 2.5 minutes; the projection to the issue's
840 × 12 months at 6 h (3.7M readings) is at the measured rate. Goal (issue #15): ≥ 10k readings/s end to end, exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from apt_energy.app import pipeline
from apt_energy.app.bad_input import publish_bad_input
from apt_energy.app.pipeline import PipelineOptions
from apt_energy.app.progress import Progress, sample
from apt_energy.app.reset import reset_pipeline
from apt_energy.app.truth import check, read_ledger
from apt_energy.config import Settings
from apt_energy.core.cliutil import add_months, in_zone, local_date
from apt_energy.edge.fleet import Fleet, FleetOptions

from bench.common import TEST_PREFIX_ROOT, report, stack_settings
from bench.figure import Figure

INTERVAL_S = 6 * 3600
FULL_READINGS = 840 * 3 * 4 * 366        # 840 households × 3 meters × 4 a day × 2024's days ≈ 3.7M
DRAIN_TIMEOUT_S = 600


def fleet(settings: Settings, households: int, months: int, workdir: Path) -> Fleet:
    tz = settings.complex.tz
    start = in_zone(local_date("2024-01-01"), tz)
    return Fleet.from_settings(settings, settings.complex.households()[:households], FleetOptions(
        start=start, until=add_months(start, months, tz), interval_s=INTERVAL_S, ledger_path=workdir / "ledger.json",
        state_path=workdir / "edge-state.json", progress_s=3600.0))


def edge_only(settings: Settings, households: int, months: int, workdir: Path) -> float:
    """The fleet into Mosquitto with no subscriber: readings acknowledged per second."""
    alone = dataclasses.replace(settings, mqtt=dataclasses.replace(
        settings.mqtt, topic_prefix=f"{TEST_PREFIX_ROOT}/e2e{uuid.uuid4().hex[:6]}"))
    workdir.mkdir(parents=True)
    f = fleet(alone, households, months, workdir)
    f.connect_all(timeout=120)
    began = time.monotonic()
    stats = f.run()
    return float(stats.acked / (time.monotonic() - began))


def wait(what: str, done: object, timeout: float, directory: Path) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f}s (logs in {directory})")
        pipeline.check_services(directory)
        time.sleep(0.5)


def end_to_end(settings: Settings, households: int, months: int, workdir: Path) -> tuple[float, int, bool, str]:
    """(readings/s fleet start → all stored, readings, database equals the ledger, detail)."""
    reset_pipeline(settings)
    directory = workdir / "pipeline"
    options = PipelineOptions(directory=directory, bridge_client_id=settings.bridge.client_id, notifier=False)
    pipeline.up(options, env={**os.environ, "APT_ENERGY_LOG_LEVEL": "INFO"})
    try:
        pipeline.wait_bridges_subscribed(options)
        progress = Progress()
        stats_file = directory / "bridge-stats.json"
        household = settings.complex.households()[0]
        bad = publish_bad_input(settings, household, datetime(2023, 12, 1, tzinfo=UTC))

        def warm() -> bool:
            sample(settings, stats_file, 0, progress)
            return progress.quarantined >= bad

        wait("spark job warm (quarantined the bad input)", warm, 300, directory)
        (workdir / "e2e").mkdir()
        f = fleet(settings, households, months, workdir / "e2e")
        began = time.monotonic()
        stats = f.run()
        published_s = time.monotonic() - began
        expected = sum(t.readings for t in read_ledger(workdir / "e2e" / "ledger.json").values())

        def stored() -> bool:
            sample(settings, stats_file, stats.acked, progress)
            return progress.stored >= expected

        wait("every reading stored", stored, DRAIN_TIMEOUT_S, directory)
        elapsed = time.monotonic() - began
    finally:
        pipeline.down(directory)
    truth = check(settings, read_ledger(workdir / "e2e" / "ledger.json"))
    detail = (f"published in {published_s:.1f}s, all stored after {elapsed:.1f}s; lost {truth.lost}, "
              f"doubled {truth.doubled}")
    return expected / elapsed, expected, truth.ok, detail


def figures(households: int = 840, months: int = 3) -> list[Figure]:
    """End-to-end readings/s (exact) against the fleet alone, same households, months and interval."""
    settings = stack_settings()
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    load = [os.getloadavg()[0]]
    try:
        alone = edge_only(settings, households, months, workdir / "edge-only")
        load.append(os.getloadavg()[0])
        rate, readings, exact_ok, detail = end_to_end(settings, households, months, workdir)
        load.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report("e2e", {
        "households × months at 6 h": f"{households} × {months}",
        "readings (ledger)": float(readings),
        "fleet alone into Mosquitto (readings/s)": alone,
        "end to end into PostgreSQL (readings/s)": rate,
        "ratio end to end / fleet alone": rate / alone,
        "database equals the ledger": "yes" if exact_ok else "NO",
        "timing": detail,
        f"projected 840 × 12 months ({FULL_READINGS:,} readings) (min)": FULL_READINGS / rate / 60,
        "load average 1 min (start, after edge-only, end)": " ".join(f"{x:.1f}" for x in load),
    })
    return [
        Figure(f"end to end at 6 h, {households} households × {months} mo, exact", rate, "readings/s",
               "fleet alone into Mosquitto", alone, target=10_000.0,
               note=f"{readings:,} readings; {detail}"),
        Figure("database equals the ledger", 1.0 if exact_ok else 0.0, "1 = yes", "—", float("nan"), target=1.0),
        Figure("projected 840 × 12 months at 6 h", FULL_READINGS / rate / 60, "min", "—", float("nan"),
               target=6.0, higher_is_better=False),
    ]


def main() -> None:
    from bench.report import Outcome, table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=840)
    ap.add_argument("--months", type=int, default=3)
    args = ap.parse_args()
    print(table([Outcome("e2e", tuple(figures(args.households, args.months)))]))


if __name__ == "__main__":
    main()
