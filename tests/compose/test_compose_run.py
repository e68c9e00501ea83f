"""compose.yaml started for real (make compose-test): the project image built from the Dockerfile, every
project service as users run it, stand-ins for the official server images (tests/compose/compose.test.yaml),
and the pipeline checked inside compose to the last reading.

One scenario, in order, each step ending in the demo's truth check (every replica's ledger against
PostgreSQL's monthly totals): ``up --scale edge=3`` (the replicas split the households through
``--shard auto``), a restart of the ``kafka`` container, ``restart bridge``, ``up --scale edge=4`` (the
re-split, seqs carried over), then ``down`` and ``up`` on the same volumes (data kept, nothing that holds a
secret made again). The edge replicas run compose.yaml's own command (real time) with a short reporting
interval and a few households, set through compose.yaml's variables. Grafana does not run (no stand-in).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from apt_energy.edge.cli import select_households

from apt_energy import config
from tests.compose.harness import (
    ComposeProject,
    Exactness,
    HealthTicker,
    Phases,
    build_images,
    exactness,
    prepare_engine,
    seq_continuity,
)

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1500)]

SERVERS = ("mosquitto", "kafka", "postgres")
PIPELINE = ("spark", "bridge", "edge")
RUN_S = float(os.environ.get("APT_ENERGY_COMPOSE_TEST_RUN_S", "25"))   # edge running time per step
HOUSEHOLDS = 24


def report(line: str) -> None:
    """Lines for the run's report (pytest -s shows them; make compose-test passes -s)."""
    print(f"[compose-test] {line}", flush=True)


@pytest.fixture(scope="module")
def phases() -> Phases:
    return Phases()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, phases: Phases) -> Iterator[ComposeProject]:
    work = tmp_path_factory.mktemp("compose")
    with phases.timed("install + base image + API socket"):
        env = prepare_engine()
    with phases.timed("image builds (stand-ins, project)"):
        build_images(env, work, config.load())
    project = ComposeProject(env=env, work=work, households=HOUSEHOLDS)
    project.down(volumes=True)          # a previous run killed halfway
    ticker = HealthTicker(env)
    ticker.start()
    try:
        yield project
    finally:
        with phases.timed("down -v (cleanup)"):
            project.down(volumes=True)
        ticker.stop()
        left = project.containers(all_states=True)
        report(phases.table())
        assert not left, f"containers left behind: {[c['Names'] for c in left]}"
        assert not project.leftovers(), f"volumes or networks left behind: {project.leftovers()}"


def run_edges_then_check(project: ComposeProject, step: str) -> Exactness:
    """Let the replicas publish for RUN_S, stop them (SIGTERM: they flush and write their ledgers), then the
    truth check; the replicas are started again afterwards."""
    time.sleep(RUN_S)
    project.compose("stop", "--timeout", "30", "edge")
    result = exactness(project)
    report(f"{step}: {result.line()} -> {'EXACT' if result.exact else 'MISMATCH'}")
    return result


def check_shares(project: ComposeProject, replicas: int) -> None:
    shares = project.shares()
    report(f"edge shares with {replicas} replicas: " + ", ".join(
        f"{name.rsplit('_', 1)[-1]}: shard {i}/{n}, {d} households" for name, (i, n, d) in sorted(shares.items())))
    assert len(shares) == replicas, shares
    assert sorted(i for i, _, _ in shares.values()) == list(range(replicas))
    assert {n for _, n, _ in shares.values()} == {replicas}
    settings = config.load(environ={}, dotenv=None)
    split = [select_households(settings, count=HOUSEHOLDS, part=(i, replicas)) for i in range(replicas)]
    ids = [h.device_id for part in split for h in part]
    assert len(ids) == len(set(ids)) == HOUSEHOLDS           # no household twice, none missing
    assert sorted(d for _, _, d in shares.values()) == sorted(len(p) for p in split)


def test_compose_stack_runs_scales_restarts_and_keeps_every_reading(project: ComposeProject, phases: Phases) -> None:
    with phases.timed("up --scale edge=3 until healthy"):
        project.compose("up", "-d", "--scale", "edge=3", timeout=900)
        states = project.wait_healthy((*SERVERS, *PIPELINE))
    report("services: " + ", ".join(f"{n.removeprefix('apt-energy-compose-test_')} {s}"
                                    for n, s in sorted(states.items())))
    one_shots = {n: s for n, s in states.items() if "_setup_" in n or "_init_" in n}
    assert one_shots and all(s.startswith("exited") for s in one_shots.values()), one_shots
    exit_codes = {c["Names"][0]: c.get("ExitCode") for c in project.containers(all_states=True)
                  if "_setup_" in c["Names"][0] or "_init_" in c["Names"][0]}
    assert set(exit_codes.values()) == {0}, exit_codes
    assert "grafana" not in " ".join(states), "grafana has no stand-in and must not run here"

    with phases.timed("3 replicas: publish, stop, truth check"):
        check_shares(project, 3)
        first = run_edges_then_check(project, "3 replicas")
    assert first.exact and first.ledger_readings > 0 and first.households == HOUSEHOLDS

    with phases.timed("restart kafka, restart bridge"):
        project.compose("start", "edge")
        time.sleep(RUN_S / 2)
        project.compose("restart", "kafka")
        project.wait_healthy(("kafka",))
        project.compose("restart", "bridge")
        project.wait_healthy(("bridge", "spark"))
    with phases.timed("up --scale edge=4: re-split, truth check"):
        project.compose("up", "-d", "--scale", "edge=4", timeout=600)
        project.wait_healthy(("edge",))
        check_shares(project, 4)
        second = run_edges_then_check(project, "after kafka + bridge restarts and --scale edge=4")
    assert second.exact and second.ledger_readings > first.ledger_readings
    settings = project.settings()
    meters, continuous = seq_continuity(settings)
    report(f"seqs: {continuous}/{meters} device-meters one life, 0..n-1 without a gap across the re-split")
    assert meters > 0 and continuous == meters

    with phases.timed("down, up on the same volumes"):
        before = project.secret_fingerprints()
        project.down(volumes=False)
        project.compose("up", "-d", "--scale", "edge=4", timeout=900)
        project.wait_healthy((*SERVERS, *PIPELINE))
        after = project.secret_fingerprints()
    changed = {k: (before[k], after.get(k)) for k in before if before[k] != after.get(k)}
    report(f"down/up: {len(before)} secret-holding files and volumes compared, changed: {changed or 'none'}")
    assert not changed
    # The replicas resume where they stopped (the crash-safe edge keeps its state in the edge-state volume)
    # and publish at once: stop them, then the truth check over everything, before and after down/up.
    project.compose("stop", "--timeout", "30", "edge")
    kept = exactness(project)
    report(f"after down/up (replicas resumed, then stopped): {kept.line()}")
    assert kept.exact and kept.stored_readings >= second.stored_readings   # data kept
    with phases.timed("4 replicas after down/up: truth check"):
        project.compose("start", "edge")
        third = run_edges_then_check(project, "after down/up")
    assert third.exact and third.ledger_readings > kept.ledger_readings

