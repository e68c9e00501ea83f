"""Grafana: dashboards generated from the complex's configuration, their provisioning, and a checker that
runs every panel's SQL against PostgreSQL the way Grafana would."""

from dashboards.build import JSON_DIR, render
from dashboards.check import DashboardError, run_panels
from dashboards.definitions import all_dashboards
from dashboards.grafana import DATASOURCE_UID, Dashboard, Panel, Query, Variable
from dashboards.macros import MacroError, TimeRange, expand_macros, interpolate

__all__ = ["DATASOURCE_UID", "JSON_DIR", "Dashboard", "DashboardError", "MacroError", "Panel", "Query", "TimeRange",
           "Variable", "all_dashboards", "expand_macros", "interpolate", "render", "run_panels"]
