"""Small builders for Grafana dashboard JSON (schema version 39, Grafana 11).

Only what our dashboards use: time series, bar charts, stats, bar gauges and tables over the one
PostgreSQL datasource, query variables, and a grid that places panels left to right. Every panel states a
unit: Grafana otherwise shows bare numbers and a reader cannot tell kWh from Mcal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The provisioned datasource (dashboards/provisioning/datasources/apt-energy.yaml) has this uid.
DATASOURCE_UID = "apt-energy-pg"
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39

JSON = dict[str, Any]


@dataclass(frozen=True)
class Query:
    """One panel's SQL; ``format`` is ``time_series`` (needs a ``time`` column) or ``table``."""

    sql: str
    format: str = "table"


@dataclass(frozen=True)
class Panel:
    """A panel before layout. ``width``/``height`` are grid units (24 columns per row)."""

    type: str
    title: str
    query: Query
    unit: str
    description: str = ""
    width: int = 12
    height: int = 8
    options: JSON = field(default_factory=dict)
    custom: JSON = field(default_factory=dict)       # fieldConfig.defaults.custom
    defaults: JSON = field(default_factory=dict)     # other fieldConfig.defaults (decimals, thresholds, color)
    overrides: tuple[JSON, ...] = ()
    time_from: str | None = None                     # a fixed relative range, e.g. "1h", whatever the dashboard's

    def to_json(self, panel_id: int, x: int, y: int) -> JSON:
        panel: JSON = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "targets": [{"refId": "A", "datasource": DATASOURCE, "editorMode": "code", "rawQuery": True,
                         "format": self.query.format, "rawSql": self.query.sql.strip()}],
            "fieldConfig": {"defaults": {"unit": self.unit, **self.defaults, "custom": dict(self.custom)},
                            "overrides": list(self.overrides)},
            "options": dict(self.options),
        }
        if self.time_from:
            panel["timeFrom"] = self.time_from
        return panel


@dataclass(frozen=True)
class Variable:
    """A query variable; its first value is selected by default (as Grafana does on first load)."""

    name: str
    label: str
    sql: str

    def to_json(self) -> JSON:
        return {"name": self.name, "label": self.label, "type": "query", "datasource": DATASOURCE,
                "query": self.sql.strip(), "definition": self.sql.strip(), "refresh": 1, "sort": 0,
                "multi": False, "includeAll": False, "hide": 0, "options": [], "current": {}}


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-1y"
    tags: tuple[str, ...] = ("apt-energy",)
    links: tuple[JSON, ...] = ()

    def to_json(self) -> JSON:
        laid_out, x, y, row_height = [], 0, 0, 0
        for i, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            laid_out.append(panel.to_json(i, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid, "title": self.title, "description": self.description, "tags": list(self.tags),
            "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": False, "graphTooltip": 1,
            "time": {"from": self.time_from, "to": "now"}, "timezone": "browser", "refresh": "1m",
            "templating": {"list": [v.to_json() for v in self.variables]},
            "annotations": {"list": []}, "links": list(self.links), "panels": laid_out,
        }


def column_unit(column: str, unit: str) -> JSON:
    """A field override giving one table column its own unit."""
    return {"matcher": {"id": "byName", "options": column}, "properties": [{"id": "unit", "value": unit}]}


def thresholds(*steps: tuple[float | None, str]) -> JSON:
    """``thresholds((None, 'green'), (60, 'yellow'), (300, 'red'))``: colour by value."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}
