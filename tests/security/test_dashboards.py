"""A Grafana viewer controls the dashboard variables (``?var-building=…`` in the URL): no value may reach
PostgreSQL as code. Checked on every panel, expanded exactly as Grafana expands it, run as the reader."""

from __future__ import annotations

import re
from datetime import datetime

import psycopg
import pytest
from apt_energy.config import Settings
from apt_energy.dashboards.cli import dashboard_inputs
from apt_energy.dashboards.definitions import all_dashboards
from apt_energy.dashboards.macros import TimeRange, expand_macros, interpolate
from apt_energy.database import connect

RANGE = TimeRange(datetime.fromisoformat("2024-01-01T00:00:00+09:00"),
                  datetime.fromisoformat("2024-02-29T23:59:59+09:00"))
HOSTILE = [
    "1 OR true",
    "1; CREATE TABLE pwned (x int); --",
    "0) UNION SELECT rolname, null FROM pg_roles --",
    "1' OR '1'='1",
    "1'; SELECT pg_sleep(30); --",
    "$__timeFilter(ts)",
    "1\\'; DROP TABLE alerts; --",
]
_USE = re.compile(r"(.?)\$\{?(building|unit)\b(:\w+)?\}?(.{0,6})")


def _queries(settings: Settings) -> list[tuple[str, str]]:
    out = []
    for d in all_dashboards(dashboard_inputs(settings)):
        dashboard = d.to_json()
        for panel in dashboard["panels"]:
            out += [(panel["title"], t["rawSql"]) for t in panel["targets"]]
        out += [(v["name"], v["query"]) for v in dashboard["templating"]["list"] if v.get("query")]
    return out


@pytest.mark.unit
def test_every_variable_stands_in_a_quoted_literal_with_a_cast() -> None:
    from apt_energy import config

    for title, sql in _queries(config.load()):
        for before, name, fmt, after in _USE.findall(sql):
            assert (before, fmt) == ("'", ":percentencode") and after.startswith("'::int"), (
                f"{title}: ${name} is not '${{{name}:percentencode}}'::int")


@pytest.mark.integration
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_variable_value_never_runs_as_sql(fresh_db: Settings, value: str) -> None:
    ran = 0
    with connect(fresh_db, role="reader") as conn:
        for title, raw in _queries(fresh_db):
            sql = expand_macros(interpolate(raw, {"building": value, "unit": value}), RANGE)
            try:
                with conn.transaction():
                    conn.execute(sql.encode())
            except psycopg.errors.InvalidTextRepresentation:
                ran += 1  # the value stayed a string literal and failed its ::int cast
                continue
            if _USE.search(raw):
                pytest.fail(f"{title}: {value!r} was accepted")
        assert conn.execute("SELECT to_regclass('pwned')").fetchone() == (None,)
    assert ran > 0
