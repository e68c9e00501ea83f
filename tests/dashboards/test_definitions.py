"""The generated dashboards hold together: uids, the provisioned datasource, units, variables, and the
committed JSON matches the generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from apt_energy.dashboards.build import JSON_DIR, render, stale
from apt_energy.dashboards.cli import dashboard_inputs
from apt_energy.dashboards.grafana import DATASOURCE_UID

from apt_energy import config

pytestmark = pytest.mark.unit

PROVISIONING = Path(__file__).resolve().parents[2] / "dashboards" / "provisioning"


def committed() -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(JSON_DIR.glob("*.json"))]


def test_committed_json_is_what_the_generator_makes_from_config() -> None:
    assert stale(dashboard_inputs(config.load())) == [], "run `apt-energy dashboards build` and commit dashboards/json"
    assert len(render(dashboard_inputs(config.load()))) == 4


def test_dashboard_uids_are_unique_and_panel_ids_unique_within_each() -> None:
    boards = committed()
    assert {b["uid"] for b in boards} == {"apt-energy-overview", "apt-energy-building", "apt-energy-household",
                                          "apt-energy-alerts"}
    for board in boards:
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), board["uid"]


def test_every_panel_and_target_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "apt-energy.yaml").read_text())["datasources"]
    assert [d["uid"] for d in provisioned] == [DATASOURCE_UID]
    kind = provisioned[0]["type"]
    for board in committed():
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": kind, "uid": DATASOURCE_UID}, panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        for var in board["templating"]["list"]:
            assert var["datasource"]["uid"] == DATASOURCE_UID


def test_the_datasource_reads_as_the_read_only_role_with_the_password_from_the_environment() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "apt-energy.yaml").read_text())["datasources"][0]
    assert ds["user"] == "${APT_ENERGY_POSTGRES_READER_USER}"
    assert ds["secureJsonData"]["password"] == "${APT_ENERGY_DB_READER_PASSWORD}"
    assert ds["jsonData"]["database"] == "${APT_ENERGY_POSTGRES_DATABASE}"


def test_every_panel_states_a_unit_and_energy_panels_the_configured_one() -> None:
    settings = config.load()
    for board in committed():
        for panel in board["panels"]:
            unit = panel["fieldConfig"]["defaults"].get("unit")
            assert unit, f"{board['uid']}: {panel['title']} has no unit"
    overview = next(b for b in committed() if b["uid"] == "apt-energy-overview")
    units = {p["title"].split(" — ")[0]: p["fieldConfig"]["defaults"]["unit"] for p in overview["panels"]
             if "monthly usage" in p["title"]}
    e = settings.energy
    assert units == {f"{e['electricity'].label_ko} Electricity": "kwatth",
                     f"{e['heating'].label_ko} Heating": "suffix: Mcal", f"{e['water'].label_ko} Water": "m3"}


def test_panels_use_only_variables_their_dashboard_defines_and_fit_the_grid() -> None:
    for board in committed():
        defined = {v["name"] for v in board["templating"]["list"]}
        for panel in board["panels"]:
            used = set(re.findall(r"\$(?!__)(\w+)", panel["targets"][0]["rawSql"]))
            assert used <= defined, f"{board['uid']}: {panel['title']} uses {used - defined}"
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24


def test_household_thresholds_come_from_config() -> None:
    t = config.load().rules.thresholds["electricity"]
    household = next(b for b in committed() if b["uid"] == "apt-energy-household")
    sql = next(p for p in household["panels"] if "Electricity" in p["title"])["targets"][0]["rawSql"]
    assert f'{t.warning} AS "warning"' in sql and f'{t.critical} AS "critical"' in sql


def test_the_provider_loads_the_folder_compose_mounts_the_json_into() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "apt-energy.yaml").read_text())["providers"][0]
    compose = yaml.safe_load((JSON_DIR.parents[1] / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./dashboards/json:{provider['options']['path']}:ro" in mounts
    assert "./dashboards/provisioning:/etc/grafana/provisioning:ro" in mounts
