"""Grafana: dashboards generated from the complex's configuration, their provisioning, and a checker that
runs every panel's SQL against PostgreSQL the way Grafana would."""

from apt_energy.dashboards.build import JSON_DIR, render
from apt_energy.dashboards.check import run_panels
from apt_energy.dashboards.definitions import all_dashboards
from apt_energy.dashboards.grafana import DATASOURCE_UID, Dashboard, Panel, Query, Variable
from apt_energy.dashboards.macros import TimeRange, expand_macros, interpolate

__all__ = [
           "DATASOURCE_UID",
           "JSON_DIR",
           "Dashboard",
           "Panel",
           "Query",
           "TimeRange",
           "Variable",
           "all_dashboards",
           "expand_macros",
           "interpolate",
           "render",
           "run_panels",
]
