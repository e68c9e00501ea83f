"""Run every panel's SQL against PostgreSQL as Grafana would, and say what its panel type cannot draw.

Grafana runs the queries as the read-only role, so this does too: a missing GRANT shows up here rather
than as an empty panel. Variables take the first value their own query returns (Grafana's default on
first load) unless given.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from apt_energy.core.errors import ConfigError
from apt_energy.dashboards.macros import TimeRange, expand_macros, interpolate

logger = logging.getLogger(__name__)

NUMBER = (int, float, Decimal)


@dataclass(frozen=True)
class Result:
    dashboard: str
    panel: str
    panel_type: str
    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    problems: tuple[str, ...]


def column_kinds(columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> dict[str, str]:
    """``time``, ``number``, ``string`` or ``null`` (no non-NULL value) per column."""
    kinds = {}
    for i, name in enumerate(columns):
        sample = next((r[i] for r in rows if r[i] is not None), None)
        kinds[name] = ("null" if sample is None else "time" if isinstance(sample, datetime | date)
                       else "number" if isinstance(sample, NUMBER) and not isinstance(sample, bool) else "string")
    return kinds


def problems(panel_type: str, fmt: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """What stops the panel type from drawing this result (empty when it can)."""
    found = []
    if not rows:
        return ["no rows"]
    kinds = column_kinds(columns, rows)
    numbers = [c for c, k in kinds.items() if k == "number"]
    if fmt == "time_series" or panel_type == "timeseries":
        # Grafana reads a numeric time column as Unix epoch seconds ($__timeGroup makes one).
        if kinds.get("time") not in ("time", "number"):
            found.append("time series needs a column named time (timestamp or epoch seconds)")
        numbers = [c for c in numbers if c != "time"]
        if not numbers:
            found.append("time series needs at least one numeric column")
        times = [r[columns.index("time")] for r in rows] if "time" in columns else []
        if times != sorted(times):
            found.append("time series rows must be ordered by time")
    elif panel_type in ("stat", "bargauge", "gauge"):
        if not numbers:
            found.append(f"{panel_type} needs a numeric column")
    elif panel_type == "barchart":
        if not any(k in ("string", "time") for k in kinds.values()):
            found.append("bar chart needs a string or time column for its x axis")
        if not numbers:
            found.append("bar chart needs a numeric column")
    elif panel_type == "table":
        if not columns:
            found.append("table needs columns")
    else:
        found.append(f"panel type {panel_type} is not checked; add its requirements here")
    return found


def variable_values(conn: psycopg.Connection, dashboard: Mapping[str, Any],
                    chosen: Mapping[str, str]) -> dict[str, str]:
    """Each variable's value: the one chosen, else the first its query returns (which must not be empty)."""
    values: dict[str, str] = {}
    for var in dashboard.get("templating", {}).get("list", []):
        rows = conn.execute(interpolate(var["query"], values).encode()).fetchall()
        options = [str(r[0]) for r in rows]
        if not options:
            raise ConfigError(f"{dashboard['uid']}: variable {var['name']} has no values")
        want = chosen.get(var["name"])
        if want is not None and want not in options:
            raise ConfigError(f"{dashboard['uid']}: {want!r} is not among variable {var['name']}'s values")
        values[var["name"]] = want if want is not None else options[0]
    return values


def run_panels(conn: psycopg.Connection, dashboard: Mapping[str, Any], time_range: TimeRange, *,
               chosen: Mapping[str, str] | None = None) -> Iterator[Result]:
    """Expand and execute every panel's query; read-only (the transaction is rolled back)."""
    values = variable_values(conn, dashboard, chosen or {})
    for panel in dashboard["panels"]:
        r = TimeRange.last(panel["timeFrom"]) if panel.get("timeFrom") else time_range
        for target in panel["targets"]:
            sql = expand_macros(interpolate(target["rawSql"], values), r)
            with conn.cursor() as cur:
                cur.execute(sql.encode())
                columns = tuple(d.name for d in cur.description or ())
                rows = cur.fetchall()
            found = problems(panel["type"], target.get("format", "table"), columns, rows)
            yield Result(dashboard["uid"], panel["title"], panel["type"], sql, columns, rows, tuple(found))
    conn.rollback()
