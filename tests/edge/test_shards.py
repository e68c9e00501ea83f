"""Splitting the complex between compose replicas: shard from the replica set, settling, watching."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from apt_energy.edge.fleet import load_state
from apt_energy.edge.shards import ConfigError, MembershipWatch, assign, replica_number, settle

pytestmark = pytest.mark.unit

THREE = ("apt-energy-edge-1.apt-energy_default", "apt-energy-edge-2.apt-energy_default",
         "apt-energy-edge-10.apt-energy_default")


def test_replica_numbers_come_from_compose_v2_and_v1_container_names() -> None:
    assert replica_number("apt-energy-edge-3.apt-energy_default") == 3
    assert replica_number("apt-energy_edge_12") == 12
    with pytest.raises(ConfigError, match="replica number"):
        replica_number("edge")


def test_each_replica_gets_its_rank_by_replica_number_not_by_name() -> None:
    shards = [assign((me, THREE)) for me in THREE]
    assert shards == [(0, 3), (1, 3), (2, 3)]          # "10" sorts after "2"
    assert assign((THREE[0], THREE[:1])) == (0, 1)
    with pytest.raises(ConfigError, match="not among"):
        assign(("apt-energy-edge-4", THREE))


def test_settle_waits_until_the_set_stays_the_same() -> None:
    now = [0.0]
    answers = iter([("a-1", ("a-1",)), ("a-1", ("a-1", "a-2")), *[("a-1", ("a-1", "a-2"))] * 100])
    seen = settle(lambda: next(answers), stable_s=5, clock=lambda: now[0],
                  sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert seen == ("a-1", ("a-1", "a-2"))
    assert now[0] == 6.0   # changed at t=1, then stable for 5 s


def test_settle_gives_up_when_the_set_keeps_changing() -> None:
    now, n = [0.0], [0]

    def flapping() -> tuple[str, tuple[str, ...]]:
        n[0] += 1
        return "a-1", tuple(f"a-{i}" for i in range(1, 2 + n[0] % 2))

    with pytest.raises(ConfigError, match="kept changing"):
        settle(flapping, stable_s=5, timeout_s=30, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))


def test_watch_reports_a_changed_replica_set_once() -> None:
    sets = iter([("a-1", ("a-1", "a-2")), ("a-1", ("a-1", "a-2", "a-3"))])
    changed = threading.Event()
    seen: list[object] = []
    watch = MembershipWatch(lambda: next(sets), ("a-1", ("a-1", "a-2")), poll_s=0.01,
                            on_change=lambda s: (seen.append(s), changed.set()))
    watch.start()
    assert changed.wait(5)
    assert seen == [("a-1", ("a-1", "a-2", "a-3"))] and watch.changed == seen[0]


def test_saved_seqs_of_other_shards_are_merged_so_a_moved_household_never_reuses_one(tmp_path: Path) -> None:
    (tmp_path / "state-0-of-2.json").write_text(json.dumps({"d1": {"electricity": [500, 7]}, "d2": {"water": [9, 1]}}))
    (tmp_path / "state-1-of-3.json").write_text(json.dumps({"d1": {"electricity": [900, 8]}}))
    merged = load_state(tmp_path / "state-0-of-3.json")   # not written yet: the first run of a new split
    assert merged["d1"].registers["electricity"].seq == 900 and merged["d1"].registers["electricity"].total_units == 8
    assert merged["d2"].registers["water"].seq == 9
    assert load_state(tmp_path / "demo-state.json") == {}  # a named file stands alone


def test_own_address_from_etc_hosts_yields_the_container_name_alias_not_the_hostname() -> None:
    # podman: /etc/hosts maps the container's own address to "<container id> <container name>"; DNS answers
    # the other replicas with their names. Seen under make compose-test: the id alone carries no number.
    from apt_energy.edge.shards import numbered_name

    own = ("30e9633def34", ["apt-energy-compose-test_edge_1"], ["10.89.0.21"])
    other = ("apt-energy-compose-test_edge_2.dns.podman", [], ["10.89.0.20"])
    assert numbered_name(own) == "apt-energy-compose-test_edge_1"
    assert numbered_name(other) == "apt-energy-compose-test_edge_2.dns.podman"
    assert numbered_name(("30e9633def34", [], [])) == "30e9633def34"    # nothing better: assign() says so
